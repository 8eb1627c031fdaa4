"""The purchase funnel: page view -> product view -> cart -> checkout -> purchase."""

from typing import Annotated

from fastapi import Query

from ubap_api.deps import (
    DateRangeDep,
    PagingDep,
    ReaderDep,
    SegmentFilter,
    guarded_router,
    segment_key,
    segment_number,
)
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import NOT_FOUND, Funnel, FunnelDay, Page

router = guarded_router("/api/funnels", "funnels")

FunnelSegment = Annotated[
    SegmentFilter,
    Query(
        description="A segment number from /api/segments/list: only that segment's sessions. "
        "Left out or 'all': every session.",
        examples=[0],
    ),
]


def _segment(reader: ReaderDep, segment_id: int | str | None) -> str | None:
    """The reader's key for the segment; 404 for a segment the funnel does not know."""
    key = segment_key(segment_id)
    if key not in (None, "all") and key not in reader.funnel_segment_ids():
        raise not_found("segment", key, "see /api/segments/list for segment ids")
    return key


@router.get("", summary="Funnel over a date range", response_model=Funnel, responses=NOT_FOUND)
def funnel(reader: ReaderDep, dates: DateRangeDep, segment_id: FunnelSegment = None) -> dict:
    """Sessions reaching each step over the range (summed over its days), with step
    conversion (share of the previous step) and overall conversion (share of the first
    step). A session reaches a step when it has that event at or after the previous step's."""
    key = _segment(reader, segment_id)
    steps = reader.funnel(dates.start, dates.end, key)
    return {
        "start": dates.start,
        "end": dates.end,
        "segment_id": segment_number(key),
        "steps": records(steps),
    }


@router.get(
    "/daily",
    summary="Funnel per day",
    response_model=Page[FunnelDay],
    responses=NOT_FOUND,
)
def funnel_daily(
    reader: ReaderDep, dates: DateRangeDep, paging: PagingDep, segment_id: FunnelSegment = None
) -> dict:
    """One row per day and funnel step, oldest first (five rows a day), for charting the
    funnel's conversion over time."""
    key = _segment(reader, segment_id)
    return page_of(reader.funnel_daily(dates.start, dates.end, key), paging)
