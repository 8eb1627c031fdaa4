"""Incidents: flagged points grouped over consecutive days (and across co-moving metrics and
scopes), their headline, severity and root cause, and how many a threshold would have raised.

- Grouping: flagged days at most ``incident_gap_days`` apart form one incident, whatever the
  metric or scope. An incident on fewer than ``min_incident_points`` days and scopes needs a
  point of at least 1.5 x the threshold or two whose evidence over the longest window
  (``level_score``, a sustained shift) passes the threshold; weaker lone points stay flagged
  points, not incidents.
- Headline: the series (metric x scope) with the most evidence (sum of |score|), the overall
  scope first on a tie.
- Root cause: for each metric and dimension, each value's contribution to the change over the
  incident's days in the metric's own units: a rate's (observed - expected) successes over the
  overall denominator, a count's or revenue's observed - expected per day, a duration's
  difference weighted by the value's share of sessions. Shares are within the dimension, of the
  contributions going the same way as the total.
"""

from datetime import date

import numpy as np
import polars as pl

from ubap_assets.core.anomalies.settings import COUNT, LOG, METRIC_KINDS, RATE, DetectorSettings
from ubap_assets.core.metrics import ANOMALY_METRIC_LABELS

INCIDENTS_SCHEMA: dict[str, pl.DataType] = {
    "incident_id": pl.String,
    "start_day": pl.Date,
    "end_day": pl.Date,
    "days": pl.Int32,
    "ongoing": pl.Boolean,
    "headline_metric": pl.String,
    "headline_label": pl.String,
    "direction": pl.String,
    "headline_dimension": pl.String,
    "headline_dimension_value": pl.String,
    "expected": pl.Float64,
    "observed": pl.Float64,
    "relative_change": pl.Float64,
    "peak_score": pl.Float64,
    "severity": pl.String,
    "metrics": pl.List(pl.String),
    "n_points": pl.Int32,
    "n_scopes": pl.Int32,
    "top_contributor": pl.String,
    "top_share": pl.Float64,
    "description": pl.String,
}
CONTRIBUTORS_SCHEMA: dict[str, pl.DataType] = {
    "incident_id": pl.String,
    "metric": pl.String,
    "dimension": pl.String,
    "dimension_value": pl.String,
    "expected": pl.Float64,
    "observed": pl.Float64,
    "change": pl.Float64,
    "share": pl.Float64,
    "rank": pl.Int32,
}
SENSITIVITY_SCHEMA: dict[str, pl.DataType] = {
    "threshold": pl.Float64,
    "incidents": pl.Int32,
    "incidents_per_30_days": pl.Float64,
    "flagged_points": pl.Int32,
    "is_current": pl.Boolean,
}
SENSITIVITY_THRESHOLDS: tuple[float, ...] = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0)
_DIMENSION_ORDER = {"device": 0, "traffic_source": 1, "segment": 2}


def group_points(
    flagged: pl.DataFrame, threshold: float, settings: DetectorSettings
) -> pl.DataFrame:
    """flagged points (day, dimension, dimension_value, score, ...) -> the same rows with a
    ``group`` number; points of groups too weak to be an incident are dropped."""
    if flagged.height == 0:
        return flagged.with_columns(pl.lit(0, pl.Int64).alias("group")).clear()
    days = flagged.select(pl.col("day").unique().sort())
    gap = days["day"].diff().dt.total_days().fill_null(0) > settings.incident_gap_days + 1
    days = days.with_columns(gap.cum_sum().cast(pl.Int64).alias("group"))
    grouped = flagged.join(days, on="day")
    sustained = (
        ((pl.col("level_score").abs() >= threshold).sum() >= 2)
        if "level_score" in flagged.columns
        else pl.lit(False)
    )
    strong = grouped.group_by("group").agg(
        (
            (pl.col("day").n_unique() >= settings.min_incident_points)
            | (pl.struct("dimension", "dimension_value").n_unique() >= settings.min_incident_points)
            | (pl.col("score").abs().max() >= 1.5 * threshold)
            | sustained
        ).alias("keep")
    )
    return grouped.join(strong.filter("keep").select("group"), on="group")


def flagged_at(history: pl.DataFrame, threshold: float, settings: DetectorSettings) -> pl.DataFrame:
    """The points flagging at ``threshold`` would give (this run's scores): scored, |score| past
    it, and a material change from the expectation."""
    change = (
        pl.when(pl.col("expected") != 0)
        .then(pl.col("value") / pl.col("expected") - 1)
        .otherwise(pl.when(pl.col("value") != 0).then(1.0).otherwise(0.0))
    )
    return history.filter(
        pl.col("has_baseline")
        & (pl.col("score").abs() >= threshold)
        & (change.abs() >= settings.min_relative_change)
    )


def count_incidents(history: pl.DataFrame, threshold: float, settings: DetectorSettings) -> int:
    """How many incidents flagging at ``threshold`` gives (the scores of this run)."""
    flagged = flagged_at(history, threshold, settings)
    grouped = group_points(
        flagged.select("day", "dimension", "dimension_value", "score", "level_score"),
        threshold,
        settings,
    )
    return grouped["group"].n_unique() if grouped.height else 0


def _format(metric: str, value: float) -> str:
    kind = METRIC_KINDS.get(metric, COUNT)
    if kind == RATE:
        return f"{value:.1%}"
    if metric == "revenue":
        return f"{value:,.2f}"
    if metric == "mean_session_duration_s":
        return f"{value:,.0f} s"
    return f"{value:,.0f}"


def _pooled(rows: pl.DataFrame, metric: str) -> tuple[float, float]:
    """(observed, expected) of one series over days: pooled for rates, daily means otherwise."""
    if rows.height == 0:
        return 0.0, 0.0
    if METRIC_KINDS.get(metric) == RATE:
        n = rows["denominator"].sum()
        if not n:
            return 0.0, 0.0
        return float(rows["numerator"].sum() / n), float(
            (rows["expected"] * rows["denominator"]).sum() / n
        )
    return float(rows["value"].mean()), float(rows["expected"].mean())


def _contributions(
    scored: pl.DataFrame, metric: str, dimension: str, overall_weight: float
) -> pl.DataFrame:
    """Per value of a dimension: observed, expected and its contribution to the total change."""
    kind = METRIC_KINDS.get(metric, COUNT)
    days = scored["day"].n_unique()
    per_value = scored.group_by("dimension_value").agg(
        pl.col("numerator").sum().alias("k"),
        pl.col("denominator").sum().alias("n"),
        (pl.col("expected") * pl.col("denominator")).sum().alias("e"),
        pl.col("value").mean().alias("obs"),
        pl.col("expected").mean().alias("exp"),
        ((pl.col("value") - pl.col("expected")) * pl.col("denominator")).sum().alias("wdiff"),
    )
    if kind == RATE:
        n = pl.col("n")
        out = per_value.select(
            "dimension_value",
            pl.when(n > 0).then(pl.col("e") / n).otherwise(0.0).alias("expected"),
            pl.when(n > 0).then(pl.col("k") / n).otherwise(0.0).alias("observed"),
            ((pl.col("k") - pl.col("e")) / max(overall_weight, 1e-12)).alias("change"),
        )
    elif kind == LOG and metric != "revenue":
        out = per_value.select(
            "dimension_value",
            pl.col("exp").alias("expected"),
            pl.col("obs").alias("observed"),
            (pl.col("wdiff") / max(overall_weight, 1e-12)).alias("change"),
        )
    else:
        out = per_value.select(
            "dimension_value",
            pl.col("exp").alias("expected"),
            pl.col("obs").alias("observed"),
            (pl.col("obs") - pl.col("exp")).alias("change"),
        )
    total = float(out["change"].sum())
    sign = 1.0 if total >= 0 else -1.0
    same_way = out.select((pl.col("change") * sign).clip(lower_bound=0.0)).to_series()
    denom = float(same_way.sum())
    out = out.with_columns(
        (same_way / denom if denom > 0 else same_way * 0.0).alias("share"),
    ).sort(  # ties (equal shares are common on small sites) ranked by value, never by chance
        ["share", "change", "dimension_value"], descending=[True, sign < 0, False]
    )
    del days
    return out.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"))


def build_incidents(
    history: pl.DataFrame, series: pl.DataFrame, settings: DetectorSettings
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history with incident_id, incidents newest first, incident_contributors)."""
    empty = (
        history,
        pl.DataFrame(schema=INCIDENTS_SCHEMA),
        pl.DataFrame(schema=CONTRIBUTORS_SCHEMA),
    )
    flagged = history.filter(pl.col("is_anomaly"))
    grouped = group_points(
        flagged.select("day", "dimension", "dimension_value", "metric", "score", "level_score"),
        settings.threshold,
        settings,
    )
    if grouped.height == 0:
        return empty
    last_day: date = history["day"].max()
    weights = series.select(
        "day", "dimension", "dimension_value", "metric", "numerator", "denominator"
    )
    scored_all = (
        history.filter(pl.col("has_baseline"))
        .join(weights, on=["day", "dimension", "dimension_value", "metric"], how="left")
        .with_columns(pl.col("numerator").fill_null(0.0), pl.col("denominator").fill_null(0.0))
    )
    incidents, contributors, ids = [], [], []
    for (_,), points in grouped.group_by(["group"]):
        start, end = points["day"].min(), points["day"].max()
        evidence = (
            points.group_by("metric", "dimension", "dimension_value")
            .agg(
                pl.col("score").abs().sum().alias("evidence"),
                pl.col("score").sort_by(pl.col("score").abs()).last().alias("peak"),
            )
            .with_columns((pl.col("dimension") == "all").alias("is_all"))
            .sort(["evidence", "is_all"], descending=True)
        )
        head = evidence.row(0, named=True)
        metric = head["metric"]
        direction = "spike" if head["peak"] > 0 else "drop"
        incident_id = f"{start}-{metric}-{direction}"
        window = scored_all.filter(pl.col("day").is_between(start, end))
        # The window's rows per (metric, dimension), split once: the loops below only look up.
        parts = window.partition_by("metric", "dimension", as_dict=True)
        headline_part = parts.get((metric, head["dimension"]), window.clear())
        headline_rows = headline_part.filter(pl.col("dimension_value") == head["dimension_value"])
        observed, expected = _pooled(headline_rows, metric)
        change = observed / expected - 1 if expected else 0.0
        peak_all = float(points["score"].abs().max())
        ratio = peak_all / settings.threshold
        severity = "low" if ratio < 1.5 else "medium" if ratio < 2.5 else "high"
        metrics = sorted(points["metric"].unique().to_list())
        top, top_share = None, None
        for m in metrics:
            overall = parts.get((m, "all"))
            weight = float(overall["denominator"].sum()) if overall is not None else 0.0
            for dimension in sorted(
                (d for metric_of, d in parts if metric_of == m),
                key=lambda d: _DIMENSION_ORDER.get(d, 9),
            ):
                if dimension == "all":
                    continue
                part = parts[(m, dimension)]
                if part["dimension_value"].n_unique() < 2:
                    continue
                c = _contributions(part, m, dimension, weight)
                contributors.append(
                    c.with_columns(
                        pl.lit(incident_id).alias("incident_id"),
                        pl.lit(m).alias("metric"),
                        pl.lit(dimension).alias("dimension"),
                    )
                )
                if m == metric and c.height and (top_share is None or c["share"][0] > top_share):
                    top, top_share = f"{dimension}={c['dimension_value'][0]}", float(c["share"][0])
        label = ANOMALY_METRIC_LABELS.get(metric, metric)
        scope = (
            ""
            if head["dimension"] == "all"
            else f" ({head['dimension']}={head['dimension_value']})"
        )
        verb = "rose" if change > 0 else "fell"
        text = (
            f"{label}{scope} {verb} {abs(change):.0%} ({_format(metric, observed)} vs "
            f"{_format(metric, expected)} expected) from {start:%-d %b} to {end:%-d %b}"
        )
        if top is not None and top_share:
            what = "rise" if direction == "spike" else "drop"
            text += f"; {top.split('=', 1)[1]} accounts for {top_share:.0%} of the {what}"
        incidents.append(
            {
                "incident_id": incident_id,
                "start_day": start,
                "end_day": end,
                "days": (end - start).days + 1,
                "ongoing": end == last_day,
                "headline_metric": metric,
                "headline_label": label,
                "direction": direction,
                "headline_dimension": head["dimension"],
                "headline_dimension_value": head["dimension_value"],
                "expected": expected,
                "observed": observed,
                "relative_change": float(np.nan_to_num(change)),
                "peak_score": float(head["peak"]),
                "severity": severity,
                "metrics": metrics,
                "n_points": points.height,
                "n_scopes": points.select("dimension", "dimension_value").n_unique(),
                "top_contributor": top,
                "top_share": top_share,
                "description": text + ".",
            }
        )
        ids.append(
            points.select("day", "dimension", "dimension_value", "metric").with_columns(
                pl.lit(incident_id).alias("_incident")
            )
        )
    table = pl.DataFrame(incidents, schema=INCIDENTS_SCHEMA).sort("start_day", descending=True)
    contrib = (
        pl.concat(contributors).select(list(CONTRIBUTORS_SCHEMA)).cast(CONTRIBUTORS_SCHEMA)
        if contributors
        else pl.DataFrame(schema=CONTRIBUTORS_SCHEMA)
    )
    floats = [c for c, t in CONTRIBUTORS_SCHEMA.items() if t == pl.Float64]
    contrib = contrib.with_columns([pl.col(c).fill_nan(0.0).fill_null(0.0) for c in floats])
    keyed = (
        history.join(
            pl.concat(ids), on=["day", "dimension", "dimension_value", "metric"], how="left"
        )
        .with_columns(pl.col("_incident").alias("incident_id"))
        .drop("_incident")
    )
    return keyed.select(history.columns), table, contrib


def sensitivity(history: pl.DataFrame, settings: DetectorSettings) -> pl.DataFrame:
    """Incidents each threshold would have raised over the scored history (this run's scores)."""
    scored = history.filter(pl.col("has_baseline") & (pl.col("dimension") == "all"))
    n_days = scored["day"].n_unique()
    thresholds = sorted({*SENSITIVITY_THRESHOLDS, float(settings.threshold)})
    rows = []
    for threshold in thresholds:
        flagged = flagged_at(history, threshold, settings)
        n = count_incidents(history, threshold, settings)
        rows.append(
            {
                "threshold": threshold,
                "incidents": n,
                "incidents_per_30_days": n * 30.0 / n_days if n_days else 0.0,
                "flagged_points": flagged.height,
                "is_current": threshold == float(settings.threshold),
            }
        )
    return pl.DataFrame(rows, schema=SENSITIVITY_SCHEMA)
