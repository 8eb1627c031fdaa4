"""Leakage guards of the models (blocking: user_predictions waits on them)."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features, models
from ubap_assets.warehouse import tables as t

# A model beating the true propensities by more than noise allows has seen the answer.
MAX_AUC_VS_CEILING = 1.03


@dg.asset_check(asset=t.MODEL_CARDS, blocking=True)
def label_windows_do_not_overlap(model_cards: pl.DataFrame) -> dg.AssetCheckResult:
    """Features end at their cutoff; train labels [train, valid) end where validation labels
    [valid, end) begin; each label window is exactly the horizon long."""
    problems = []
    for row in model_cards.unique(["task"]).iter_rows(named=True):
        plan = features.TimePlan(
            first_day=row["train_cutoff"],
            end=row["label_window_valid_end"],
            train_cutoff=row["train_cutoff"],
            valid_cutoff=row["valid_cutoff"],
            horizon_days=row["horizon_days"],
            lookback_days=row["lookback_days"],
        )
        try:
            models.check_windows(plan)
        except models.LeakageError as err:
            problems.append(f"{row['task']}: {err}")
        if row["label_window_train_end"] > row["valid_cutoff"]:
            problems.append(f"{row['task']}: training labels run past the validation cutoff")
        train_days = (row["label_window_train_end"] - row["train_cutoff"]).days
        if train_days != row["horizon_days"]:
            problems.append(f"{row['task']}: training label window is {train_days} days")
    return dg.AssetCheckResult(
        passed=not problems and model_cards.height > 0,
        metadata={"problems": dg.MetadataValue.md("\n".join(problems) or "none")},
    )


@dg.asset_check(asset=t.MODEL_CARDS, blocking=True)
def training_features_ignore_future_events(
    warehouse: DuckDBResource, model_cards: pl.DataFrame
) -> dg.AssetCheckResult:
    """The features at the training cutoff are identical with and without every event after
    it (the validation period acts as planted future events)."""
    row = model_cards.row(0, named=True)
    with warehouse.get_connection() as con:
        differing = features.future_events_guard(con, row["train_cutoff"], row["lookback_days"])
    return dg.AssetCheckResult(
        passed=differing == 0,
        metadata={
            "train_cutoff": str(row["train_cutoff"]),
            "users_whose_features_changed": differing,
        },
    )


@dg.asset_check(asset=t.MODEL_CARDS, blocking=True)
def no_label_derivable_from_features(model_cards: pl.DataFrame) -> dg.AssetCheckResult:
    """No single feature separates the training labels (ROC-AUC < 0.99)."""
    worst = model_cards.sort("max_single_feature_auc", descending=True).row(0, named=True)
    return dg.AssetCheckResult(
        passed=worst["max_single_feature_auc"] < models.LEAKAGE_AUC,
        metadata={
            "task": worst["task"],
            "feature": worst["leakiest_feature"],
            "max_single_feature_auc": round(worst["max_single_feature_auc"], 4),
            "limit": models.LEAKAGE_AUC,
        },
    )


@dg.asset_check(asset=t.MODEL_METRICS, blocking=True)  # WARN severity: orders, never blocks
def models_below_ceiling(model_metrics: pl.DataFrame) -> dg.AssetCheckResult:
    """No model beats the generator's true propensities (warning: that smells of leakage);
    skipped without ground truth."""
    ratios = model_metrics.filter(pl.col("model") != models.CEILING)["auc_vs_ceiling"].drop_nulls()
    if ratios.is_empty():
        return dg.AssetCheckResult(passed=True, metadata={"note": "skipped: no ground truth"})
    best = float(ratios.max())
    return dg.AssetCheckResult(
        passed=best <= MAX_AUC_VS_CEILING,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"best_auc_vs_ceiling": round(best, 4), "limit": MAX_AUC_VS_CEILING},
    )


@dg.asset_check(asset=t.MODEL_METRICS, blocking=True)
def model_metrics_are_finite(model_metrics: pl.DataFrame) -> dg.AssetCheckResult:
    """Every metric is a finite number; exactly one best model per task."""
    cols = ["roc_auc", "pr_auc", "brier", "log_loss", "threshold", "f1"]
    bad = model_metrics.filter(pl.any_horizontal(~pl.col(c).is_finite() for c in cols)).height
    best = model_metrics.filter(pl.col("is_best")).group_by("task").len()
    one_best = bool(best.height == model_metrics["task"].n_unique() and (best["len"] == 1).all())
    return dg.AssetCheckResult(
        passed=bad == 0 and one_best,
        metadata={"non_finite_rows": bad, "one_best_per_task": one_best},
    )
