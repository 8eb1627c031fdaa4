"""User segments: their trends, profiles and the clustering summary."""

from typing import Annotated

from fastapi import Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of, records
from ubap_api.schemas import (
    Page,
    SegmentProfile,
    SegmentSummary,
    SegmentTrend,
)

router = guarded_router("/api/segments", "segments")


@router.get("/trends", response_model=Page[SegmentTrend])
def segment_trends(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    segment_id: Annotated[
        str | None, Query(max_length=50, description="One segment ('all' = all users).")
    ] = None,
) -> dict:
    """One row per day x segment (segment 'all' included)."""
    return page_of(reader.segment_trends(dates.start, dates.end, segment_id), paging)


@router.get("/list", response_model=Page[SegmentProfile])
def segment_list(reader: ReaderDep, paging: PagingDep) -> dict:
    """Every segment with its size and mean behaviour, largest first."""
    return page_of(reader.segment_profiles(), paging)


@router.get("/summary", response_model=SegmentSummary)
def segment_summary(reader: ReaderDep) -> dict:
    """The clustering: chosen k, quality scores, and each segment's share."""
    profiles = reader.segment_profiles()
    rows = records(profiles)
    first = rows[0] if rows else {}
    scores = reader.segment_scores()
    return {
        "k": int(first.get("k") or len(rows)),
        "users": int(profiles["users"].sum()) if rows else 0,
        "silhouette": first.get("silhouette") or 0.0,
        "davies_bouldin": first.get("davies_bouldin") or 0.0,
        "ward_silhouette": first.get("ward_silhouette"),
        "ward_agreement_ari": first.get("ward_agreement_ari"),
        "persona_ari": scores.get("persona_ari"),
        "persona_note": scores.get("note"),
        "run_id": first.get("run_id"),
        "segments": rows,
    }
