"""Model scores: high-value and at-risk users, per-segment outlook, model quality."""

from typing import Annotated, Literal

import polars as pl
from fastapi import Path, Query

from ubap_api.deps import PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import NOT_FOUND, ModelMetric, Page, ScoredPage, SegmentPrediction

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
    """Per segment: users, mean purchase and bounce probability, at-risk users."""
    return page_of(reader.segment_predictions(), paging)


@router.get("/high-value/{model}", response_model=ScoredPage, responses=NOT_FOUND)
def high_value(
    reader: ReaderDep,
    paging: PagingDep,
    model: Annotated[
        str,
        Path(
            pattern=r"^[a-z0-9_]{1,64}$",
            description="'best', or the name of the conversion model that scored the users.",
        ),
    ],
    min_probability: Probability = 0.0,
) -> dict:
    """Users most likely to purchase within the horizon, by the conversion model in service,
    with its reasons. Empty with a ``note`` when the task has insufficient data."""
    note = reader.prediction_notes().get("conversion")
    used = reader.scoring_models().get("conversion")
    if model not in ("best", used) and not note:
        fitted = set(reader.model_metrics("conversion")["model"].to_list())
        if model in fitted:
            raise not_found(
                "scoring model", model, f"users are scored by the best model only: use '{used}'"
            )
        names = ", ".join(sorted(fitted - {"true_propensity"})) or "none"
        raise not_found("model", model, f"use 'best' or one of: {names}")
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
