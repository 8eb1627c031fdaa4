"""Dependencies: settings, the bearer-token guard and the per-request snapshot reader.

Everything that touches DuckDB is a plain ``def`` (the reader dependency and every route that
uses it): FastAPI runs those in its thread pool, so a slow query never blocks the event loop,
and DuckDB releases the GIL while it works.
"""

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator, Field

from ubap_api.schemas import API_ERRORS
from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import SnapshotReader, open_reader

SNAPSHOT_HEADER = "X-UBAP-Snapshot"
NOT_REFRESHED_HEADER = "X-UBAP-Not-Refreshed"
READER_STATE = "ubap_reader"  # the request's reader, in the ASGI scope state


def not_refreshed_header(stale: dict[str, str]) -> str:
    """'<table>: <reason>; ...' as one ASCII header line (reasons are free text)."""
    parts = []
    for table, reason in stale.items():
        text = " ".join(reason.replace(";", ",").split())[:200]
        parts.append(f"{table}: {text.encode('ascii', 'replace').decode()}")
    return "; ".join(parts)


def stale_tables_read(state: dict) -> dict[str, str]:
    """The not-refreshed tables the request's reader read from ({} without a reader)."""
    reader = state.get(READER_STATE)
    return reader.not_refreshed_read() if reader is not None else {}


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


def guarded_router(prefix: str, tag: str) -> APIRouter:
    """A resource's router: every route behind the bearer token, with the shared error
    responses documented."""
    return APIRouter(
        prefix=prefix, tags=[tag], dependencies=[Depends(require_token)], responses=API_ERRORS
    )


def get_reader(request: Request) -> Iterator[SnapshotReader]:
    """One reader per request, bound to the snapshot that is current when the request starts.

    A plain generator: FastAPI runs it (and the routes that take it) in its thread pool. Opening
    a snapshot file that is damaged raises UnreadableSnapshotError, answered with 503.
    """
    # Resolved once per request: by the response cache in front, else here.
    snapshot = request.scope.get("state", {}).get("ubap_snapshot")
    try:
        reader = SnapshotReader(snapshot) if snapshot is not None else None
    except FileNotFoundError:
        reader = None  # pruned in between (needs `keep` newer publications): resolve again
    if reader is None:
        reader = open_reader(request.app.state.settings.snapshots)  # NoSnapshotError -> 503
    request.state.snapshot_id = reader.snapshot_id
    # The header middleware reads which stale tables this request used (X-UBAP-Not-Refreshed).
    setattr(request.state, READER_STATE, reader)
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


EARLIEST_DATE = date(2000, 1, 1)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def latest_date() -> date:
    """The last date a range may name: a year from today (no data lies further ahead)."""
    return date.today() + timedelta(days=366)


def _bad_date(name: str, value: object, msg: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": msg, "input": str(value)}]
    )


async def get_date_range(
    request: Request,
    start: Annotated[
        date | None, Query(description="First day (inclusive), YYYY-MM-DD, 2000-01-01 or later.")
    ] = None,
    end: Annotated[
        date | None, Query(description="Last day (inclusive), YYYY-MM-DD, at most a year ahead.")
    ] = None,
) -> DateRange:
    """Inclusive start/end date filters (ISO dates); either may be left out.

    Pydantic also reads a number as a Unix time (``start=0`` is 1970-01-01): only YYYY-MM-DD
    between 2000-01-01 and a year from today is accepted, else 422 naming the parameter.
    """
    latest = latest_date()
    for name, value in (("start", start), ("end", end)):
        if value is None:
            continue
        raw = request.query_params.get(name, "")
        if not _ISO_DATE.match(raw):
            raise _bad_date(name, raw, f"{name} must be an ISO date YYYY-MM-DD, got {raw!r}")
        if not EARLIEST_DATE <= value <= latest:
            raise _bad_date(
                name, raw, f"{name} ({value}) must lie between {EARLIEST_DATE} and {latest}"
            )
    if start is not None and end is not None and start > end:
        raise _bad_date("start", start, f"start ({start}) must not be after end ({end})")
    return DateRange(start, end)


DateRangeDep = Annotated[DateRange, Depends(get_date_range)]


MAX_SEGMENT_ID = 10_000
ALL_USERS = "all"


def _segment_id(value: object) -> object:
    """A segment number, or 'all': anything else is a 422 that says what is valid."""
    if value is None or (isinstance(value, int) and 0 <= value <= MAX_SEGMENT_ID):
        return value
    text = str(value).strip()
    if text == ALL_USERS:
        return ALL_USERS
    if text.isascii() and text.isdigit() and int(text) <= MAX_SEGMENT_ID:
        return int(text)
    raise ValueError(
        f"segment_id must be a segment number (0 to {MAX_SEGMENT_ID}, see /api/segments/list) "
        f"or 'all' for all users, got {text[:50]!r}"
    )


# Segment ids are integers everywhere in the API; 'all' names the all-users series.
SegmentFilter = Annotated[
    Annotated[int, Field(ge=0, le=MAX_SEGMENT_ID)] | Literal["all"] | None,
    BeforeValidator(_segment_id),
]


def segment_key(segment_id: int | str | None) -> str | None:
    """The segment filter as the tables spell it: '3', 'all', or None for no filter."""
    return None if segment_id is None else str(segment_id)


def segment_number(key: str | None) -> int | None:
    """A table's segment key as the API answers it: its number, or None for all users."""
    return None if key is None or key == ALL_USERS else int(key)
