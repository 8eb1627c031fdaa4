"""Model scores: high-value and at-risk users, per-segment outlook, model quality."""

from typing import Annotated, Literal

import polars as pl
from fastapi import HTTPException, Path, Query

from ubap_api.deps import PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of, records
from ubap_api.schemas import (
    NOT_FOUND,
    ConversionModelName,
    ModelMetric,
    Page,
    ScoredPage,
    SegmentPrediction,
)

router = guarded_router("/api/predictions", "predictions")

Probability = Annotated[float, Query(ge=0.0, le=1.0, description="Lowest probability kept.")]


# The columns of each list's reasons and their method: the model that ranked the list.
REASON_COLUMNS = {
    "conversion": (("reason_1", "reason_2", "reason_3"), "conversion_reason_method"),
    "bounce": (
        ("at_risk_reason_1", "at_risk_reason_2", "at_risk_reason_3"),
        "at_risk_reason_method",
    ),
}


def _with_task_reasons(row: dict, task: str) -> dict:
    columns, method = REASON_COLUMNS[task]
    reasons = [row.get(c) for c in columns]
    return {**row, "reasons": [r for r in reasons if r], "reason_method": row.get(method)}


def _scored_page(
    found: tuple[pl.DataFrame, int], paging: PagingDep, task: str, note: str | None
) -> dict:
    frame, total = found
    data = [_with_task_reasons(row, task) for row in records(frame)]
    return {
        "data": data,
        "count": len(data),
        "total": total,
        "limit": paging.limit,
        "offset": paging.offset,
        "note": note,
    }


@router.get("/segments", response_model=Page[SegmentPrediction])
def by_segment(reader: ReaderDep, paging: PagingDep) -> dict:
    """Per segment: users, mean purchase and bounce probability, at-risk users.

    One row per segment of ``user_segments`` (its scored users joined to
    ``user_predictions``), largest first: ``users``, the mean P(purchase within the horizon)
    and mean P(next session bounces) (probabilities 0..1), the users flagged at risk and
    their share (0..1), and ``expected_converters`` (the sum of the purchase probabilities:
    users expected to buy within the horizon). A task that serves no model (insufficient
    data) has null means there. Page with ``limit``/``offset``. Empty only when no scored user
    has a segment; 503 when the segments or predictions table is missing."""
    return page_of(reader.segment_predictions(), paging)


@router.get("/high-value/{model}", response_model=ScoredPage, responses=NOT_FOUND)
def high_value(
    reader: ReaderDep,
    paging: PagingDep,
    model: Annotated[
        ConversionModelName,
        Path(
            description="'best' (the model in service), or a conversion model family; only "
            "the family in service scored the users (see /api/predictions/models, is_best).",
        ),
    ],
    min_probability: Probability = 0.0,
) -> dict:
    """Users most likely to purchase within the horizon, by the conversion model in service,
    with its reasons. Empty with a ``note`` when the task has insufficient data.

    The pipeline fits three families (logistic_regression, random_forest, xgboost), keeps the
    one with the best validation PR-AUC and scores every user with it only: ``best`` and that
    family's name answer the same list; another family is a 404 that names the one in
    service (its metrics are in /api/predictions/models, its scores were never computed).
    Any other value is a 422 listing the valid ones."""
    note = reader.prediction_notes().get("conversion")
    used = reader.scoring_models().get("conversion")
    if model is not ConversionModelName.best and model.value != used and not note:
        raise HTTPException(
            404,
            detail=f"model {model.value!r} was fitted and evaluated but does not score users: "
            f"only the model in service does ({used}, the best on validation PR-AUC); use "
            f"'best' or '{used}'",
        )
    found = reader.high_value_users(min_probability, paging.limit, paging.offset)
    return _scored_page(found, paging, "conversion", note)


@router.get("/at-risk", response_model=ScoredPage)
def at_risk(
    reader: ReaderDep,
    paging: PagingDep,
    min_probability: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="Instead of the model's threshold, keep users >= this."),
    ] = None,
) -> dict:
    """Users whose next session is likely a bounce, most at risk first, with the bounce model's
    reasons. Empty with a ``note`` when the task has insufficient data."""
    found = reader.at_risk_users(min_probability, paging.limit, paging.offset)
    return _scored_page(found, paging, "bounce", reader.prediction_notes().get("bounce"))


@router.get("/models", response_model=Page[ModelMetric])
def models(
    reader: ReaderDep,
    paging: PagingDep,
    task: Annotated[Literal["conversion", "bounce"] | None, Query()] = None,
    split: Annotated[
        Literal["validation", "test"] | None,
        Query(description="'test': the reported window; 'validation': the one that chose."),
    ] = None,
) -> dict:
    """Metrics of every fitted model with n, positives and bootstrap 95% intervals: the test
    window first, the model in service first; a task with insufficient data has rows with
    status 'insufficient data' and a note with the numbers."""
    return page_of(reader.model_metrics(task, split), paging)
