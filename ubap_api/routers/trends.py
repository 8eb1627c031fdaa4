"""Daily and weekly trend series."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, require_token
from ubap_api.records import page_of
from ubap_api.schemas import API_ERRORS, DailyTrend, Page, WeeklyTrend

router = APIRouter(
    prefix="/api/trends",
    tags=["trends"],
    dependencies=[Depends(require_token)],
    responses=API_ERRORS,
)

Dimension = Annotated[
    Literal["all", "device", "traffic_source"],
    Query(description="Breakdown: 'all' (one series) or per device / traffic source."),
]
DimensionValue = Annotated[
    str | None, Query(max_length=100, description="Keep one value, e.g. 'mobile'.")
]


@router.get("/daily", response_model=Page[DailyTrend])
def daily(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    dimension: Dimension = "all",
    dimension_value: DimensionValue = None,
) -> dict:
    """One row per day (x dimension value), oldest first."""
    frame = reader.trends("daily", dates.start, dates.end, dimension, dimension_value)
    return page_of(frame, paging)


@router.get("/weekly", response_model=Page[WeeklyTrend])
def weekly(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    dimension: Dimension = "all",
    dimension_value: DimensionValue = None,
) -> dict:
    """One row per ISO week (week_start in the range) x dimension value, oldest first."""
    frame = reader.trends("weekly", dates.start, dates.end, dimension, dimension_value)
    return page_of(frame, paging)
