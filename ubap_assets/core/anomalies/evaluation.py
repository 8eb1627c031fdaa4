"""anomaly_scores: incident-level scoring against the generator's planted anomalies, for the
detector and a plain rolling 3-sigma baseline side by side.

A planted anomaly counts when its days reach the scored days. It is *caught* when an incident
overlaps its days and involves a metric of its family (conversion, traffic, engagement; see
``METRIC_FAMILIES``). An incident is *false* when it overlaps no planted anomaly (its days
extended by ``GRACE_DAYS``: pooled evidence can outlast the anomaly by a few days). Days to
detect: the incident's first day minus the anomaly's first day (0 when it starts with it).
"""

from datetime import timedelta

import numpy as np
import polars as pl

from ubap_assets.core.anomalies.incidents import group_points
from ubap_assets.core.anomalies.settings import METRIC_FAMILIES, DetectorSettings

GRACE_DAYS = 7
BASELINE_WINDOW_DAYS = 28
BASELINE_THRESHOLD = 3.0
DETECTORS = ("ensemble", "rolling_3sigma")  # ensemble: this detector (all windows combined)

SCORES_SCHEMA: dict[str, pl.DataType] = {
    "detector": pl.String,
    "kind": pl.String,
    "injected": pl.Int64,  # planted anomalies within the scored days
    "detected": pl.Int64,  # of them caught by an incident
    "false_positives": pl.Int64,  # incidents overlapping no planted anomaly
    "precision": pl.Float64,  # incidents that are true / all incidents
    "recall": pl.Float64,
    "f1": pl.Float64,
    "incidents": pl.Int64,
    "false_incidents_per_30_days": pl.Float64,
    "mean_days_to_detect": pl.Float64,
    "scored_days": pl.Int64,
    "note": pl.String,
}
INCIDENT_SPANS_SCHEMA = {
    "group": pl.Int64,
    "start_day": pl.Date,
    "end_day": pl.Date,
    "families": pl.List(pl.String),
}


def rolling_baseline(history: pl.DataFrame) -> pl.DataFrame:
    """The plain baseline: each series' value against the mean and standard deviation of its
    previous 28 days; |z| >= 3 flags (no seasonality, no noise model, no pooling)."""
    prev = pl.col("value").shift(1)
    keys = ["dimension", "dimension_value", "metric"]
    scored = (
        history.sort(*keys, "day")
        .with_columns(
            prev.rolling_mean(BASELINE_WINDOW_DAYS, min_samples=14).over(keys).alias("_mean"),
            prev.rolling_std(BASELINE_WINDOW_DAYS, min_samples=14).over(keys).alias("_sd"),
        )
        .filter(pl.col("_sd").is_not_null() & (pl.col("_sd") > 0))
        .with_columns(((pl.col("value") - pl.col("_mean")) / pl.col("_sd")).alias("score"))
    )
    return scored.filter(pl.col("score").abs() >= BASELINE_THRESHOLD).select("day", *keys, "score")


def incident_spans(
    flagged: pl.DataFrame, threshold: float, settings: DetectorSettings
) -> pl.DataFrame:
    """One row per incident the flagged points make: its days and metric families."""
    grouped = group_points(flagged, threshold, settings)
    if grouped.height == 0:
        return pl.DataFrame(schema=INCIDENT_SPANS_SCHEMA)
    return (
        grouped.with_columns(
            pl.col("metric").replace_strict(METRIC_FAMILIES, default="other").alias("family")
        )
        .group_by("group")
        .agg(
            pl.col("day").min().alias("start_day"),
            pl.col("day").max().alias("end_day"),
            pl.col("family").unique().sort().alias("families"),
        )
        .sort("start_day")
        .cast(INCIDENT_SPANS_SCHEMA)
    )


def match(spans: pl.DataFrame, planted: pl.DataFrame) -> tuple[list[int | None], int]:
    """For each planted anomaly, the days it took to detect (None: missed); and how many
    incidents overlap no planted anomaly."""
    delays: list[int | None] = []
    true_groups: set[int] = set()
    for p in planted.iter_rows(named=True):
        family = METRIC_FAMILIES.get(p["metric"], "other")
        end = p["end_date"] + timedelta(days=GRACE_DAYS)
        best = None
        for s in spans.iter_rows(named=True):
            if s["start_day"] <= end and s["end_day"] >= p["anomaly_date"]:
                true_groups.add(s["group"])
                if family in s["families"]:
                    delay = max(0, (s["start_day"] - p["anomaly_date"]).days)
                    best = delay if best is None else min(best, delay)
        delays.append(best)
    return delays, spans.height - len(true_groups)


def _row(detector, kind, delays, false_incidents, n_incidents, scored_days, note) -> tuple:
    caught = [d for d in delays if d is not None]
    injected, detected = len(delays), len(caught)
    true_incidents = n_incidents - false_incidents
    precision = true_incidents / n_incidents if n_incidents else 0.0
    recall = detected / injected if injected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (
        detector,
        kind,
        injected,
        detected,
        false_incidents,
        precision,
        recall,
        f1,
        n_incidents,
        false_incidents * 30.0 / scored_days if scored_days else 0.0,
        float(np.mean(caught)) if caught else 0.0,
        scored_days,
        note,
    )


def score_detection(
    history: pl.DataFrame, injected: pl.DataFrame, settings: DetectorSettings | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """anomaly_scores: per detector x planted kind (+ overall), recall, false incidents per 30
    days and days to detect. Empty, with a note, without ground truth."""
    settings = settings or DetectorSettings()
    notes: list[str] = []
    if injected.height == 0:
        notes.append("injected_anomalies is empty (no ground truth): scoring skipped")
        return pl.DataFrame(schema=SCORES_SCHEMA), notes
    scored = history.filter(pl.col("has_baseline") & (pl.col("dimension") == "all"))
    if scored.height == 0:
        notes.append("no scored day yet (warm-up): scoring skipped")
        return pl.DataFrame(schema=SCORES_SCHEMA), notes
    first, last = scored["day"].min(), scored["day"].max()
    scored_days = (last - first).days + 1
    planted = injected.filter((pl.col("end_date") >= first) & (pl.col("anomaly_date") <= last))
    if planted.height < injected.height:
        notes.append(
            f"{injected.height - planted.height} planted anomaly(ies) fall outside the scored "
            f"days ({first} to {last}: warm-up or not yet complete) and are not counted"
        )
    if planted.height == 0:
        notes.append("no planted anomaly within the scored days: scoring skipped")
        return pl.DataFrame(schema=SCORES_SCHEMA), notes
    note = (
        "incident level, every scope and metric: caught = an incident overlaps the planted days "
        f"and involves its metric family; false = an incident overlapping nothing planted "
        f"(+{GRACE_DAYS} days)"
    )
    flagged = {
        "ensemble": history.filter(pl.col("is_anomaly")).select(
            "day", "dimension", "dimension_value", "metric", "score", "level_score"
        ),
        "rolling_3sigma": rolling_baseline(history),
    }
    thresholds = {"ensemble": settings.threshold, "rolling_3sigma": BASELINE_THRESHOLD}
    rows = []
    for detector in DETECTORS:
        points = flagged[detector].filter(pl.col("day").is_between(first, last))
        spans = incident_spans(points, thresholds[detector], settings)
        delays, false_incidents = match(spans, planted)
        for kind in sorted(planted["kind"].unique().to_list()):
            mask = (planted["kind"] == kind).to_list()
            kind_delays = [d for d, m in zip(delays, mask, strict=True) if m]
            rows.append(_row(detector, kind, kind_delays, 0, 0, scored_days, note))
        rows.append(
            _row(detector, "overall", delays, false_incidents, spans.height, scored_days, note)
        )
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row"), notes


def false_incident_rate(history: pl.DataFrame, settings: DetectorSettings) -> dict[str, float]:
    """On a clean world (nothing planted): incidents per 30 scored days of each detector."""
    scored = history.filter(pl.col("has_baseline") & (pl.col("dimension") == "all"))
    if scored.height == 0:
        return {d: 0.0 for d in DETECTORS}
    first, last = scored["day"].min(), scored["day"].max()
    days = (last - first).days + 1
    ours = history.filter(pl.col("is_anomaly") & pl.col("day").is_between(first, last))
    base = rolling_baseline(history).filter(pl.col("day").is_between(first, last))
    return {
        "ensemble": incident_spans(
            ours.select("day", "dimension", "dimension_value", "metric", "score", "level_score"),
            settings.threshold,
            settings,
        ).height
        * 30.0
        / days,
        "rolling_3sigma": incident_spans(base, BASELINE_THRESHOLD, settings).height * 30.0 / days,
    }
