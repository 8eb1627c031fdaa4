"""model_cards: one row per (task, model family) fitted in a run, saying which window chose
what, the sizes of the three windows, the test metrics, the leakage probe, the reason method
and where the artifact is stored; one row per task with insufficient data, saying why.

Dagster-free.
"""

import json
from datetime import datetime

import polars as pl

from ubap_assets.core.features import TimePlan
from ubap_assets.core.models import (
    METRIC_COLUMNS,
    MODEL_NAMES,
    REASON_METHODS,
    TEST,
    VALIDATION,
    TaskResult,
    window_text,
)

CARDS_SCHEMA: dict[str, pl.DataType] = {
    "model_version": pl.String,
    "task": pl.String,
    "label": pl.String,
    "model": pl.String,
    "status": pl.String,
    "note": pl.String,
    "is_best": pl.Boolean,
    "params_json": pl.String,
    "candidates_json": pl.String,
    "chosen_on": pl.String,
    "reported_on": pl.String,
    "features_json": pl.String,
    "train_cutoff": pl.Datetime("us"),
    "valid_cutoff": pl.Datetime("us"),
    "test_cutoff": pl.Datetime("us"),
    "label_window_train_end": pl.Datetime("us"),
    "label_window_valid_end": pl.Datetime("us"),
    "label_window_test_end": pl.Datetime("us"),
    "horizon_days": pl.Int32,
    "lookback_days": pl.Int32,
    "training_end": pl.Datetime("us"),
    "retrain_every_days": pl.Int32,
    "next_training_end": pl.Datetime("us"),
    "n_train": pl.Int64,
    "positives_train": pl.Int64,
    "n_valid": pl.Int64,
    "positives_valid": pl.Int64,
    "n_test": pl.Int64,
    "positives_test": pl.Int64,
    "metrics_json": pl.String,
    "threshold": pl.Float64,
    "max_single_feature_auc": pl.Float64,
    "max_single_feature_auc_ci_low": pl.Float64,
    "leakiest_feature": pl.String,
    "reason_method": pl.String,
    "artifact_path": pl.String,
    "created_at": pl.Datetime("us"),
}


def model_cards_frame(
    results: dict[str, TaskResult],
    plan: TimePlan,
    version: str,
    paths: dict[tuple[str, str], str],
    created_at: datetime,
) -> pl.DataFrame:
    """One row per (task, model family) fitted in the run; one row (model null) per task
    with insufficient data, saying why."""
    rows = []
    for task, result in results.items():
        base = {
            "model_version": version,
            "task": task,
            "label": result.label,
            "status": result.status,
            "note": result.note or None,
            "train_cutoff": plan.train_cutoff,
            "valid_cutoff": plan.valid_cutoff,
            "test_cutoff": plan.test_cutoff,
            "label_window_train_end": plan.label_window("train")[1],
            "label_window_valid_end": plan.label_window(VALIDATION)[1],
            "label_window_test_end": plan.label_window(TEST)[1],
            "horizon_days": plan.horizon_days,
            "lookback_days": plan.lookback_days,
            "training_end": plan.end,
            "retrain_every_days": plan.retrain_every_days or None,
            "next_training_end": plan.next_training_end,
            "n_train": result.sizes["train"][0],
            "positives_train": result.sizes["train"][1],
            "n_valid": result.sizes[VALIDATION][0],
            "positives_valid": result.sizes[VALIDATION][1],
            "n_test": result.sizes[TEST][0],
            "positives_test": result.sizes[TEST][1],
            "chosen_on": f"{window_text(plan, VALIDATION)}: hyper-parameters and the model in "
            "service by PR-AUC, the threshold by F1",
            "reported_on": window_text(plan, TEST),
            "created_at": created_at,
        }
        if not result.served:
            rows.append({**base, "model": None, "is_best": False})
            continue
        tested = result.metrics.filter(pl.col("split") == TEST)
        for family in MODEL_NAMES:
            metrics = tested.filter(pl.col("model") == family).row(0, named=True)
            rows.append(
                {
                    **base,
                    "model": family,
                    "is_best": family == result.best,
                    "params_json": json.dumps(result.params[family]),
                    "candidates_json": json.dumps(
                        [c for c in result.candidates if c["model"] == family]
                    ),
                    "features_json": json.dumps(result.design.names),
                    "metrics_json": json.dumps({m: metrics[m] for m in METRIC_COLUMNS}),
                    "threshold": result.thresholds[family],
                    "max_single_feature_auc": result.leakage.auc,
                    "max_single_feature_auc_ci_low": result.leakage.ci_low,
                    "leakiest_feature": result.leakage.feature,
                    "reason_method": REASON_METHODS[family],
                    "artifact_path": paths.get((task, family), ""),
                }
            )
    return pl.DataFrame(rows, schema=CARDS_SCHEMA)
