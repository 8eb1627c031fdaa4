"""Checks on the anomaly tables: bounded, finite scores and detection quality against the
planted anomalies (skipped without ground truth)."""

import dagster as dg
import polars as pl

from ubap_assets.core.anomalies import MAX_ABS_SCORE
from ubap_assets.lib.checks import skip, skippable_check
from ubap_assets.warehouse import tables as t

MIN_F1 = 0.7


@skippable_check(
    "anomaly_detection_f1",
    asset=t.ANOMALY_SCORES,
    description=(
        f"Incident-level F1 of the detector against the planted anomalies is at least "
        f"{MIN_F1} (warns; skipped when there is no ground truth)."
    ),
    ins={"anomaly_scores": dg.AssetIn(t.ANOMALY_SCORES)},
)
def anomaly_detection_f1(context: dg.AssetCheckExecutionContext, anomaly_scores: pl.DataFrame):
    row = anomaly_scores.filter((pl.col("detector") == "ensemble") & (pl.col("kind") == "overall"))
    if row.height == 0:
        skip(context, "insufficient data: no planted anomaly (ground truth) within the scored days")
        return
    r = row.row(0, named=True)
    yield dg.AssetCheckResult(
        passed=bool(r["f1"] >= MIN_F1),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "f1": round(float(r["f1"]), 4),
            "precision": round(float(r["precision"]), 4),
            "recall": round(float(r["recall"]), 4),
            "injected": int(r["injected"]),
            "false_incidents_per_30_days": round(float(r["false_incidents_per_30_days"]), 3),
            "min_f1": MIN_F1,
        },
    )


@dg.asset_check(
    asset=t.ANOMALY_HISTORY,
    blocking=True,
    description=(
        f"No NaN or null in the scores, ranges and values; |score| <= {MAX_ABS_SCORE:g}; "
        "lower <= upper."
    ),
)
def anomaly_history_finite(anomaly_history: pl.DataFrame) -> dg.AssetCheckResult:
    floats = [c for c, d in anomaly_history.schema.items() if d == pl.Float64]
    bad = [
        c
        for c in floats
        if anomaly_history[c].is_nan().any()
        or anomaly_history[c].is_null().any()
        or anomaly_history[c].is_infinite().any()
    ]
    inverted = anomaly_history.filter(pl.col("lower") > pl.col("upper") + 1e-9).height
    too_big = anomaly_history.filter(pl.col("score").abs() > MAX_ABS_SCORE).height
    return dg.AssetCheckResult(
        passed=not bad and inverted == 0 and too_big == 0,
        metadata={
            "nan_columns": str(bad),
            "inverted_ranges": inverted,
            "scores_above_bound": too_big,
        },
    )
