"""Checks on the anomaly tables: detection quality against the planted anomalies."""

import dagster as dg
import polars as pl

from ubap_assets.warehouse import tables as t

MIN_F1 = 0.8


# blocking=True only orders it before the serving snapshot: a WARN result never blocks.
@dg.asset_check(
    blocking=True,
    asset=t.ANOMALY_SCORES,
    description=(
        f"The ensemble's overall F1 against the planted anomalies is at least {MIN_F1} "
        "(warns; skipped when there is no ground truth)."
    ),
)
def anomaly_detection_f1(anomaly_scores: pl.DataFrame) -> dg.AssetCheckResult:
    row = anomaly_scores.filter((pl.col("detector") == "ensemble") & (pl.col("kind") == "overall"))
    if row.height == 0:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="skipped: no injected anomalies (ground truth) to score against",
            metadata={"skipped": True},
        )
    r = row.row(0, named=True)
    return dg.AssetCheckResult(
        passed=r["f1"] >= MIN_F1,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "f1": round(float(r["f1"]), 4),
            "precision": round(float(r["precision"]), 4),
            "recall": round(float(r["recall"]), 4),
            "injected": int(r["injected"]),
            "min_f1": MIN_F1,
        },
    )


@dg.asset_check(
    asset=t.ANOMALY_HISTORY,
    blocking=True,
    description=("No NaN or null in the scores, ranges and values; lower <= upper."),
)
def anomaly_history_finite(anomaly_history: pl.DataFrame) -> dg.AssetCheckResult:
    floats = [c for c, d in anomaly_history.schema.items() if d == pl.Float64]
    bad = [
        c for c in floats if anomaly_history[c].is_nan().any() or anomaly_history[c].is_null().any()
    ]
    inverted = anomaly_history.filter(pl.col("lower") > pl.col("upper") + 1e-9).height
    return dg.AssetCheckResult(
        passed=not bad and inverted == 0,
        metadata={"nan_columns": str(bad), "inverted_ranges": inverted},
    )
