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
    Query(
        description="Breakdown: 'all' (one series over all users) or one series per device "
        "or per traffic source."
    ),
]
DimensionValue = Annotated[
    str | None,
    Query(
        max_length=100,
        description="Keep one value of the dimension, e.g. 'mobile' (device) or 'search' "
        "(traffic_source); an unknown value gives an empty page.",
        examples=["mobile"],
    ),
]


def _add_trend_route(grain: Grain, row: type, summary: str, description: str) -> None:
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
    router.get(f"/{grain}", summary=summary, response_model=Page[row])(route)


_add_trend_route(
    "daily",
    DailyTrend,
    "Daily activity, conversion and revenue",
    "One row per day (UTC) and dimension value, oldest first: users, sessions, events, "
    "purchases, revenue, session conversion and bounce rates. `start`/`end` bound the day; "
    "the last day is flagged `is_complete: false` when the data ends inside it.",
)
_add_trend_route(
    "weekly",
    WeeklyTrend,
    "Weekly activity, conversion and revenue",
    "One row per ISO week (named by its Monday, `week_start` within `start`/`end`) and "
    "dimension value, oldest first. Distinct users are counted over the whole week, not summed "
    "over its days; a week is complete when all its 7 days are.",
)
