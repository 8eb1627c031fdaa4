"""Daily and weekly trend series."""

from typing import Annotated, Literal

from fastapi import Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of
from ubap_api.schemas import DailyTrend, Page, WeeklyTrend
from ubap_assets.warehouse.queries.trends import Grain

router = guarded_router("/api/trends", "trends")

Dimension = Annotated[
    Literal["all", "device", "traffic_source"],
    Query(description="Breakdown: 'all' (one series) or per device / traffic source."),
]
DimensionValue = Annotated[
    str | None, Query(max_length=100, description="Keep one value, e.g. 'mobile'.")
]


def _add_trend_route(grain: Grain, row: type, description: str) -> None:
    """GET /api/trends/<grain>: one page of that grain's trend table."""

    def route(
        reader: ReaderDep,
        dates: DateRangeDep,
        paging: PagingDep,
        dimension: Dimension = "all",
        dimension_value: DimensionValue = None,
    ) -> dict:
        frame = reader.trends(grain, dates.start, dates.end, dimension, dimension_value)
        return page_of(frame, paging)

    # FastAPI takes the operation's name and description from the function.
    route.__name__, route.__doc__ = grain, description
    router.get(f"/{grain}", response_model=Page[row])(route)


_add_trend_route("daily", DailyTrend, "One row per day (x dimension value), oldest first.")
_add_trend_route(
    "weekly",
    WeeklyTrend,
    "One row per ISO week (week_start in the range) x dimension value, oldest first.",
)
