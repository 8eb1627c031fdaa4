"""Checks of user_predictions: probabilities in [0, 1], reasons present, one row per user."""

import dagster as dg
import polars as pl

from ubap_assets.warehouse import tables as t


@dg.asset_check(asset=t.USER_PREDICTIONS, blocking=True)
def predictions_are_valid(user_predictions: pl.DataFrame) -> dg.AssetCheckResult:
    """Probabilities are finite and in [0, 1], every user has three reasons, ids are unique."""
    p = user_predictions
    bad_prob = p.filter(
        pl.any_horizontal(
            ~pl.col(c).is_finite() | (pl.col(c) < 0) | (pl.col(c) > 1)
            for c in ("conversion_probability", "at_risk_probability")
        )
    ).height
    missing_reasons = p.filter(
        pl.any_horizontal(pl.col(f"reason_{i}").is_null() for i in (1, 2, 3))
    ).height
    duplicates = p.height - p["user_id"].n_unique()
    return dg.AssetCheckResult(
        passed=p.height > 0 and bad_prob == 0 and missing_reasons == 0 and duplicates == 0,
        metadata={
            "rows": p.height,
            "bad_probabilities": bad_prob,
            "missing_reasons": missing_reasons,
            "duplicate_users": duplicates,
        },
    )
