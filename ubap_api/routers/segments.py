"""User segments: their trends, profiles and the clustering summary."""

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
from ubap_api.records import not_found, page_of, records, round_row
from ubap_api.schemas import NOT_FOUND, Page, SegmentProfile, SegmentSummary, SegmentTrend

router = guarded_router("/api/segments", "segments")


@router.get(
    "/trends",
    summary="Daily trends per segment",
    response_model=Page[SegmentTrend],
    responses=NOT_FOUND,
)
def segment_trends(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    segment_id: Annotated[
        SegmentFilter,
        Query(
            description="A segment number from /api/segments/list: only that segment's rows. "
            "'all': only the all-users rows. Left out: every segment and the all-users rows.",
            examples=[0],
        ),
    ] = None,
) -> dict:
    """One row per day and segment, oldest first, with the same metrics as the daily trends.
    The all-users series has `segment_id` null and `segment_name` 'All users'; users without
    a segment count only there."""
    key = segment_key(segment_id)
    if key not in (None, "all"):
        known = {str(s) for s in reader.segment_profiles()["segment_id"].to_list()}
        if key not in known:
            raise not_found("segment", key, "see /api/segments/list for segment ids")
    page = page_of(reader.segment_trends(dates.start, dates.end, key), paging)
    for row in page["data"]:
        row["segment_id"] = segment_number(row["segment_id"])
    return page


@router.get("/list", summary="Segment profiles", response_model=Page[SegmentProfile])
def segment_list(reader: ReaderDep, paging: PagingDep) -> dict:
    """Every segment with its size, share of users and its users' mean behaviour (sessions,
    pages, minutes, bounce, content mix, cart and purchase activity), largest first."""
    return page_of(reader.segment_profiles(), paging)


@router.get(
    "/summary", summary="Clustering quality and segment shares", response_model=SegmentSummary
)
def segment_summary(reader: ReaderDep) -> dict:
    """The clustering: the chosen number of segments k, its quality (silhouette,
    Davies-Bouldin, agreement with a Ward clustering, and with the generator's personas when
    the data is synthetic) and each segment's share of users."""
    profiles = reader.segment_profiles()
    rows = records(profiles)
    first = rows[0] if rows else {}
    scores = round_row(reader.segment_scores())
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
