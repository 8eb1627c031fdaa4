"""Score every user with the models in service: conversion and at-risk (bounce) probabilities.

Dagster-free. Models arrive as artifacts ``{"model": estimator, "design": Design}``; each
task's reasons come from that task's own model (core/explain.py). A task without a model in
service (insufficient data) gets null scores, ranks and reasons and a note saying why, so no
one reads a guess as a prediction.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from ubap_assets.core.explain import OUTCOMES, top_reasons
from ubap_assets.core.models import REASON_METHODS, predict
from ubap_assets.lib.blocks import block_workers, map_blocks

CONVERSION_REASONS: tuple[str, ...] = ("reason_1", "reason_2", "reason_3")
AT_RISK_REASONS: tuple[str, ...] = ("at_risk_reason_1", "at_risk_reason_2", "at_risk_reason_3")
PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "conversion_probability": pl.Float64,
    "conversion_rank": pl.Int64,
    "at_risk_probability": pl.Float64,
    "at_risk": pl.Boolean,
    "at_risk_rank": pl.Int64,
    **{c: pl.String for c in CONVERSION_REASONS},
    **{c: pl.String for c in AT_RISK_REASONS},
    "conversion_model": pl.String,
    "bounce_model": pl.String,
    "conversion_reason_method": pl.String,
    "at_risk_reason_method": pl.String,
    "conversion_note": pl.String,
    "bounce_note": pl.String,
    "model_version": pl.String,
    "scored_at": pl.Datetime("us"),
}
PREDICTION_COLUMNS: tuple[str, ...] = tuple(PREDICTION_SCHEMA)
# Users scored (matrix, probabilities, reasons) per chunk: bounds the memory of a large world.
SCORE_CHUNK_USERS = 100_000


@dataclass(frozen=True)
class ServedModel:
    """A task's model in service (``artifact`` = {"model", "design"}), or why there is none."""

    name: str | None = None
    artifact: dict | None = None
    threshold: float | None = None
    note: str | None = None  # set when no model is served

    @classmethod
    def missing(cls, note: str) -> "ServedModel":
        return cls(note=note)


@contextmanager
def _model_jobs(models: list[object], jobs: int) -> Iterator[None]:
    """Score with each model's own threads (``n_jobs``: a forest's trees, xgboost's rows) at
    most ``jobs``, then as trained; never more than it was trained with (xgboost stays on its
    one thread). Two tasks on two cores with two jobs each ran four threads: 0.66-0.83 s for
    20k users against 0.55-0.61 s with one job each, and a forest on one job sums its trees in
    order, so its probabilities no longer vary in their last bits."""
    before = [
        (model, own)
        for model in models
        if (own := model.get_params().get("n_jobs")) is not None and own > jobs
    ]
    for model, _ in before:
        model.set_params(n_jobs=jobs)
    try:
        yield
    finally:
        for model, own in before:
            model.set_params(n_jobs=own)


def _task_columns(
    features: pl.DataFrame, served: ServedModel, task: str, reasons: tuple[str, ...]
) -> pl.DataFrame:
    """user_id, the probability and the reasons of one task (nulls when nothing is served)."""
    frame = features.select("user_id")
    if served.artifact is None:
        return frame.with_columns(
            probability=pl.lit(None, pl.Float64), **{c: pl.lit(None, pl.String) for c in reasons}
        )
    model, design = served.artifact["model"], served.artifact["design"]
    prefix = reasons[0][:-1]
    parts = []
    # Per-row work in chunks of users: the model matrix and the contributions of one chunk at
    # a time, not of every user at once (each row's score and reasons depend on that row only).
    for chunk in features.iter_slices(SCORE_CHUNK_USERS):
        p = np.clip(predict(model, design, chunk), 0.0, 1.0)
        explained = top_reasons(model, design, chunk, outcome=OUTCOMES[task], prefix=prefix)
        parts.append(explained.with_columns(probability=pl.Series(p, dtype=pl.Float64)))
    if not parts:  # no user to score
        return frame.with_columns(
            probability=pl.lit(None, pl.Float64), **{c: pl.lit(None, pl.String) for c in reasons}
        )
    return pl.concat(parts).select("user_id", "probability", *reasons)


def predict_users(
    features: pl.DataFrame,
    *,
    conversion: ServedModel,
    bounce: ServedModel,
    model_version: str,
    scored_at: datetime,
) -> pl.DataFrame:
    """One row per user of ``features`` (computed at ``scored_at``), high-value first."""
    # The two tasks score at once, each on a thread (each row's values do not depend on it),
    # and their models share the cores between them.
    served = [m.artifact["model"] for m in (conversion, bounce) if m.artifact is not None]
    with _model_jobs(served, max(1, block_workers() // max(len(served), 1))):
        conv, risk = map_blocks(
            lambda task: _task_columns(features, *task),
            [(conversion, "conversion", CONVERSION_REASONS), (bounce, "bounce", AT_RISK_REASONS)],
        )
    frame = conv.rename({"probability": "conversion_probability"}).join(
        risk.rename({"probability": "at_risk_probability"}),
        on="user_id",
        how="left",
        maintain_order="left",
    )
    threshold = bounce.threshold if bounce.threshold is not None else float("nan")

    def method(served: ServedModel) -> pl.Expr:
        return pl.lit(REASON_METHODS.get(served.name) if served.artifact else None, pl.String)

    return (
        frame.with_columns(
            conversion_rank=pl.col("conversion_probability")
            .rank("ordinal", descending=True)
            .cast(pl.Int64),
            at_risk_rank=pl.col("at_risk_probability")
            .rank("ordinal", descending=True)
            .cast(pl.Int64),
            at_risk=pl.col("at_risk_probability") >= threshold,
            conversion_model=pl.lit(conversion.name, pl.String),
            bounce_model=pl.lit(bounce.name, pl.String),
            conversion_reason_method=method(conversion),
            at_risk_reason_method=method(bounce),
            conversion_note=pl.lit(conversion.note, pl.String),
            bounce_note=pl.lit(bounce.note, pl.String),
            model_version=pl.lit(model_version),
            scored_at=pl.lit(scored_at, dtype=pl.Datetime("us")),
        )
        .select(PREDICTION_COLUMNS)
        .cast(PREDICTION_SCHEMA)
        .sort("conversion_rank", "at_risk_rank", "user_id", nulls_last=True)
    )
