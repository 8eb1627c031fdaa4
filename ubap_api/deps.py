"""Dependencies: settings, the bearer-token guard and the per-request snapshot reader."""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Annotated

import duckdb
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError

from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import SnapshotReader, open_reader

SNAPSHOT_HEADER = "X-UBAP-Snapshot"


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def token_problem(settings: Settings, authorization: str | None) -> str | None:
    """Why a request is refused (None when no token is configured or it matches)."""
    expected = settings.api_token
    if not expected:
        return None
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        return "missing or wrong bearer token: send 'Authorization: Bearer <UBAP_API_TOKEN>'"
    return None


async def require_token(request: Request) -> None:
    """Reject the request unless it carries the configured bearer token (if one is set)."""
    problem = token_problem(request.app.state.settings, request.headers.get("authorization"))
    if problem:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=problem,
            headers={"WWW-Authenticate": "Bearer"},
        )


async def get_reader(request: Request) -> AsyncIterator[SnapshotReader]:
    """One reader per request, bound to the snapshot that is current when the request starts.

    Async on purpose (as are the routes and the other dependencies): what a request reads is
    memoized per immutable snapshot or an in-memory lookup, so a thread-pool hop would cost
    more than it saves on a 2-core machine.
    """
    # Resolved once per request: by the response cache in front, else here.
    snapshot = request.scope.get("state", {}).get("ubap_snapshot")
    try:
        reader = SnapshotReader(snapshot) if snapshot is not None else None
    except (FileNotFoundError, duckdb.IOException):
        reader = None  # pruned in between (needs `keep` newer publications): resolve again
    if reader is None:
        reader = open_reader(request.app.state.settings.snapshots)  # NoSnapshotError -> 503
    request.state.snapshot_id = reader.snapshot_id
    try:
        yield reader
    finally:
        reader.close()


ReaderDep = Annotated[SnapshotReader, Depends(get_reader)]


MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Rows per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")] = 0,
) -> Paging:
    """limit/offset query parameters."""
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


@dataclass(frozen=True)
class DateRange:
    start: date | None
    end: date | None


async def get_date_range(
    start: Annotated[date | None, Query(description="First day (inclusive).")] = None,
    end: Annotated[date | None, Query(description="Last day (inclusive).")] = None,
) -> DateRange:
    """Inclusive start/end date filters (ISO dates); either may be left out."""
    if start is not None and end is not None and start > end:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "start"),
                    "msg": f"start ({start}) must not be after end ({end})",
                    "input": str(start),
                }
            ]
        )
    return DateRange(start, end)


DateRangeDep = Annotated[DateRange, Depends(get_date_range)]
