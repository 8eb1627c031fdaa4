"""Model scores: high-value and at-risk users, per-segment outlook, model quality."""

from typing import Annotated, Literal

import polars as pl
from fastapi import Path, Query

from ubap_api.deps import PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records, with_reasons
from ubap_api.schemas import NOT_FOUND, ModelMetric, Page, ScoredUser, SegmentPrediction

router = guarded_router("/api/predictions", "predictions")

Probability = Annotated[float, Query(ge=0.0, le=1.0, description="Lowest probability kept.")]


def _scored_page(found: tuple[pl.DataFrame, int], paging: PagingDep) -> dict:
    frame, total = found
    data = [with_reasons(row) for row in records(frame)]
    return {
        "data": data,
        "count": len(data),
        "total": total,
        "limit": paging.limit,
        "offset": paging.offset,
    }


@router.get("/segments", response_model=Page[SegmentPrediction])
def by_segment(reader: ReaderDep, paging: PagingDep) -> dict:
    """Per segment: users, mean purchase and bounce probability, at-risk users."""
    return page_of(reader.segment_predictions(), paging)


@router.get("/high-value/{model}", response_model=Page[ScoredUser], responses=NOT_FOUND)
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
    """Users most likely to purchase in the horizon, by the given conversion model."""
    used = reader.scoring_models().get("conversion")
    if model not in ("best", used):
        fitted = set(reader.model_metrics("conversion")["model"].to_list())
        if model in fitted:
            raise not_found(
                "scoring model", model, f"users are scored by the best model only: use '{used}'"
            )
        names = ", ".join(sorted(fitted - {"true_propensity"})) or "none"
        raise not_found("model", model, f"use 'best' or one of: {names}")
    found = reader.high_value_users(min_probability, paging.limit, paging.offset)
    return _scored_page(found, paging)


@router.get("/at-risk", response_model=Page[ScoredUser])
def at_risk(
    reader: ReaderDep,
    paging: PagingDep,
    min_probability: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="Instead of the model's threshold, keep users >= this."),
    ] = None,
) -> dict:
    """Users whose next session is likely a bounce, most at risk first."""
    return _scored_page(reader.at_risk_users(min_probability, paging.limit, paging.offset), paging)


@router.get("/models", response_model=Page[ModelMetric])
def models(
    reader: ReaderDep,
    paging: PagingDep,
    task: Annotated[Literal["conversion", "bounce"] | None, Query()] = None,
) -> dict:
    """Validation metrics of every fitted model, best first within a task."""
    return page_of(reader.model_metrics(task), paging)
