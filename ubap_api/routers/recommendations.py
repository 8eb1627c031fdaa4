"""Recommendations for users and pages, site insights, offline evaluation."""

from typing import Annotated, Literal

from fastapi import Path, Query

from ubap_api.deps import PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import (
    NOT_FOUND,
    AdminInsight,
    Page,
    PageRecommendations,
    RecEvaluation,
    UserRecommendations,
)

router = guarded_router("/api/recommendations", "recommendations")

UserId = Annotated[str, Path(min_length=1, max_length=200, description="A user id.")]
PageId = Annotated[str, Path(min_length=1, max_length=200, description="A page id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many to return.")]


@router.get("/users/{user_id}", response_model=UserRecommendations, responses=NOT_FOUND)
def for_user(reader: ReaderDep, user_id: UserId, limit: Limit = 10) -> dict:
    """The pages recommended to a user, best first, each with why."""
    data = records(reader.user_recommendations(user_id, limit))
    # Every known user has recommendations; only an empty answer needs the users lookup.
    if not data and reader.user(user_id) is None:
        raise not_found("user", user_id, "see /api/predictions/high-value/best for user ids")
    return {"user_id": user_id, "data": data, "count": len(data)}


@router.get("/pages/{page_id}", response_model=PageRecommendations, responses=NOT_FOUND)
def for_page(reader: ReaderDep, page_id: PageId, limit: Limit = 10) -> dict:
    """Pages most similar to a page (content embeddings)."""
    page = reader.page(page_id)
    if page is None:
        raise not_found("page", page_id, "page ids are in the catalogue (pages table)")
    data = records(reader.similar_pages(page_id, limit))
    return {"page": page, "data": data, "count": len(data)}


@router.get("/admin", response_model=Page[AdminInsight])
def admin(
    reader: ReaderDep,
    paging: PagingDep,
    kind: Annotated[
        Literal["high_exit_page", "funnel_dropoff", "never_recommended", "content_island"] | None,
        Query(),
    ] = None,
    severity: Annotated[Literal["high", "medium", "low"] | None, Query()] = None,
) -> dict:
    """Actionable findings about the site, most severe first."""
    return page_of(reader.admin_insights(kind, severity), paging)


@router.get("/metrics", response_model=Page[RecEvaluation])
def metrics(reader: ReaderDep, paging: PagingDep) -> dict:
    """Offline ranking metrics per method on the test window: NDCG@k and recall@k with bootstrap
    95% intervals, HR, MAP, coverage, novelty, the knobs chosen on the validation window and
    which method is served. ``status`` "insufficient data" (null metrics, reason in ``note``)
    when too few users could be evaluated or k is not below the candidate pages."""
    return page_of(reader.rec_evaluation(), paging)
