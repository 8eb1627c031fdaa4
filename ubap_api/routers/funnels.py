"""The purchase funnel: page view -> product view -> cart -> checkout -> purchase."""

from typing import Annotated

from fastapi import Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import NOT_FOUND, Funnel, FunnelDay, Page

router = guarded_router("/api/funnels", "funnels")

SegmentId = Annotated[
    str, Query(max_length=50, description="'all', or a segment id from /api/segments/list.")
]


def _check_segment(reader: ReaderDep, segment_id: str) -> None:
    if segment_id != "all" and segment_id not in reader.funnel_segment_ids():
        raise not_found("segment", segment_id, "see /api/segments/list for segment ids")


@router.get("", response_model=Funnel, responses=NOT_FOUND)
def funnel(reader: ReaderDep, dates: DateRangeDep, segment_id: SegmentId = "all") -> dict:
    """Sessions reaching each step over the range, with step and overall conversion."""
    _check_segment(reader, segment_id)
    steps = reader.funnel(dates.start, dates.end, segment_id)
    return {
        "start": dates.start,
        "end": dates.end,
        "segment_id": segment_id,
        "steps": records(steps),
    }


@router.get("/daily", response_model=Page[FunnelDay], responses=NOT_FOUND)
def funnel_daily(
    reader: ReaderDep, dates: DateRangeDep, paging: PagingDep, segment_id: SegmentId = "all"
) -> dict:
    """One row per day x step, oldest first."""
    _check_segment(reader, segment_id)
    return page_of(reader.funnel_daily(dates.start, dates.end, segment_id), paging)
