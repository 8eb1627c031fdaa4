"""Dependencies: settings, the bearer-token guard and the per-request snapshot reader."""

import secrets
from collections.abc import Iterator
from datetime import date
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import SnapshotReader, open_reader

SNAPSHOT_HEADER = "X-UBAP-Snapshot"


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_bearer = HTTPBearer(auto_error=False, description="UBAP_API_TOKEN, when the server sets one")


def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Reject the request unless it carries the configured bearer token (if one is set)."""
    expected = settings.api_token
    if not expected:
        return
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token: send 'Authorization: Bearer <UBAP_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_reader(request: Request, settings: SettingsDep) -> Iterator[SnapshotReader]:
    """One reader per request, bound to the snapshot that is current when the request starts."""
    reader = open_reader(settings.snapshots)  # NoSnapshotError -> 503 (see main.py)
    request.state.snapshot_id = reader.snapshot_id
    try:
        yield reader
    finally:
        reader.close()


ReaderDep = Annotated[SnapshotReader, Depends(get_reader)]


class Paging:
    """limit/offset query parameters."""

    def __init__(
        self,
        settings: SettingsDep,
        limit: Annotated[int, Query(ge=1, le=10_000, description="Rows per page.")] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")] = 0,
    ):
        if limit > settings.max_page_size:
            raise HTTPException(
                status_code=422, detail=f"limit must be at most {settings.max_page_size}"
            )
        self.limit = limit
        self.offset = offset


PagingDep = Annotated[Paging, Depends()]


class DateRange:
    """Inclusive start/end date filters (ISO dates); either may be left out."""

    def __init__(
        self,
        start: Annotated[date | None, Query(description="First day (inclusive).")] = None,
        end: Annotated[date | None, Query(description="Last day (inclusive).")] = None,
    ):
        if start is not None and end is not None and start > end:
            raise HTTPException(
                status_code=422, detail=f"start ({start}) must not be after end ({end})"
            )
        self.start = start
        self.end = end


DateRangeDep = Annotated[DateRange, Depends()]
