"""Score every user with the chosen models: conversion and at-risk (bounce) probabilities.

Dagster-free. Models arrive as artifacts ``{"model": estimator, "design": Design}``; the
reasons come from the XGBoost conversion model's feature contributions, whichever model won.
"""

from datetime import datetime

import numpy as np
import polars as pl

from ubap_assets.core.explain import top_reasons
from ubap_assets.core.models import predict

PREDICTION_COLUMNS: tuple[str, ...] = (
    "user_id",
    "conversion_probability",
    "conversion_rank",
    "at_risk_probability",
    "at_risk",
    "at_risk_rank",
    "reason_1",
    "reason_2",
    "reason_3",
    "conversion_model",
    "bounce_model",
    "model_version",
    "scored_at",
)


def predict_users(
    features: pl.DataFrame,
    *,
    conversion: dict,
    bounce: dict,
    explainer: dict,
    conversion_model: str,
    bounce_model: str,
    bounce_threshold: float,
    model_version: str,
    scored_at: datetime,
) -> pl.DataFrame:
    """One row per user of ``features`` (computed at ``scored_at``)."""
    p_conv = np.clip(predict(conversion["model"], conversion["design"], features), 0.0, 1.0)
    p_risk = np.clip(predict(bounce["model"], bounce["design"], features), 0.0, 1.0)
    reasons = top_reasons(explainer["model"], explainer["design"], features)
    frame = features.select("user_id").with_columns(
        conversion_probability=pl.Series(p_conv, dtype=pl.Float64),
        at_risk_probability=pl.Series(p_risk, dtype=pl.Float64),
    )
    return (
        frame.join(reasons, on="user_id", how="left", maintain_order="left")
        .with_columns(
            conversion_rank=pl.col("conversion_probability")
            .rank("ordinal", descending=True)
            .cast(pl.Int64),
            at_risk_rank=pl.col("at_risk_probability")
            .rank("ordinal", descending=True)
            .cast(pl.Int64),
            at_risk=pl.col("at_risk_probability") >= bounce_threshold,
            conversion_model=pl.lit(conversion_model),
            bounce_model=pl.lit(bounce_model),
            model_version=pl.lit(model_version),
            scored_at=pl.lit(scored_at, dtype=pl.Datetime("us")),
        )
        .select(PREDICTION_COLUMNS)
        .sort("conversion_rank")
    )
