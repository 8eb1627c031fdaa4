"""Recommendations for users and pages, site insights, offline evaluation."""

from typing import Annotated

from fastapi import Path, Query

from ubap_api.deps import PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import (
    NOT_FOUND,
    AdminInsight,
    InsightKind,
    Page,
    PageRecommendations,
    RecEvaluation,
    Severity,
    UserRecommendations,
)

router = guarded_router("/api/recommendations", "recommendations")

UserId = Annotated[str, Path(min_length=1, max_length=200, description="A user id.")]
PageId = Annotated[str, Path(min_length=1, max_length=200, description="A page id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many to return.")]


@router.get("/users/{user_id}", response_model=UserRecommendations, responses=NOT_FOUND)
def for_user(reader: ReaderDep, user_id: UserId, limit: Limit = 10) -> dict:
    """The pages recommended to a user, best first, each with why.

    Up to ``limit`` pages (default 10, at most the k the pipeline stored) from
    ``user_recommendations``: ``rank`` 1 first, each with the served method's ``score``
    (unitless, higher = better), its ``source`` and ``top_signal`` and a ``reason`` sentence.
    A user with any event gets the served hybrid's (or its best component's) personalised
    list; a user without events gets the cold-start chain (segment, then global popularity).
    Pages the user already engaged with are never recommended (the evaluation's exclusion
    policy), so ``data`` is empty only for a user who engaged with every candidate page. An
    unknown user id is a 404."""
    data = records(reader.user_recommendations(user_id, limit))
    # Every known user has recommendations; only an empty answer needs the users lookup.
    if not data and reader.user(user_id) is None:
        raise not_found("user", user_id, "see /api/predictions/high-value/best for user ids")
    return {"user_id": user_id, "data": data, "count": len(data)}


@router.get("/pages/{page_id}", response_model=PageRecommendations, responses=NOT_FOUND)
def for_page(reader: ReaderDep, page_id: PageId, limit: Limit = 10) -> dict:
    """Pages most similar to a page (content embeddings).

    The page's catalogue row (``price`` in the currency of the source) and up to ``limit``
    neighbours (default 10) by cosine ``similarity`` (-1..1) of the sentence embeddings of
    their title, description and category, most similar first, never the page itself.
    ``data`` is empty for a page the catalogue lists but the embedding step did not pair
    (e.g. no text to embed). An unknown page id is a 404."""
    page = reader.page(page_id)
    if page is None:
        raise not_found("page", page_id, "page ids are in the catalogue (pages table)")
    data = records(reader.similar_pages(page_id, limit))
    return {"page": page, "data": data, "count": len(data)}


@router.get("/admin", response_model=Page[AdminInsight])
def admin(
    reader: ReaderDep,
    paging: PagingDep,
    kind: Annotated[InsightKind | None, Query(description="Keep one kind of finding.")] = None,
    severity: Annotated[Severity | None, Query(description="Keep one severity.")] = None,
) -> dict:
    """Actionable findings about the site, most severe first.

    Rows of ``admin_insights``, high severity first, then by ``volume`` (the traffic behind
    the finding): busy pages with a high exit or bounce rate, funnel steps converting far
    worse than usual for a device, source or day, pages no user is recommended, pages without
    a close neighbour. Each has its ``value`` and ``baseline`` in the ``metric``'s unit (rates
    as fractions 0..1), one sentence of ``details`` and a ``suggested_action``. Filter with
    ``kind`` and ``severity``; page with ``limit``/``offset``. Empty when nothing stands out
    (or no row matches the filters)."""
    return page_of(reader.admin_insights(kind, severity), paging)


@router.get("/metrics", response_model=Page[RecEvaluation])
def metrics(reader: ReaderDep, paging: PagingDep) -> dict:
    """Offline ranking metrics per method on the test window: NDCG@k and recall@k with bootstrap
    95% intervals, HR, MAP, coverage, novelty, the knobs chosen on the validation window and
    which method is served. ``status`` "insufficient data" (null metrics, reason in ``note``)
    when too few users could be evaluated or k is not below the candidate pages."""
    return page_of(reader.rec_evaluation(), paging)
