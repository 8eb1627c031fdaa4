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


_SERIES_KEY = ["day", "dimension", "dimension_value", "metric"]


def _kind(metric: pl.Expr) -> pl.Expr:
    return metric.replace_strict(METRIC_KINDS, default=COUNT, return_dtype=pl.String)


def _run(*by: str) -> pl.Expr:
    """A sorted key numbering the runs of equal ``by`` in a frame sorted by them. Grouped by it,
    a sum adds each run's rows in order as a column's ``sum()`` does (grouped by the columns
    themselves, polars adds in another order and the last digit can differ)."""
    return pl.struct(*by).rle_id().set_sorted().alias("_run")


def _headlines(grouped: pl.DataFrame) -> pl.DataFrame:
    """Per incident (``group``), oldest first: its days, headline series (most evidence, the
    overall scope first on a tie), peak, largest |score|, metrics and counts of points and
    scopes."""
    evidence = (
        grouped.group_by("group", "metric", "dimension", "dimension_value")
        .agg(
            pl.col("score").abs().sum().alias("evidence"),
            pl.col("score").sort_by(pl.col("score").abs()).last().alias("peak"),
        )
        .with_columns((pl.col("dimension") == "all").alias("is_all"))
        .sort(  # equal evidence past the overall scope: the first series by name
            ["group", "evidence", "is_all", "metric", "dimension", "dimension_value"],
            descending=[False, True, True, False, False, False],
        )
        .group_by("group", maintain_order=True)
        .first()
        .select(
            "group",
            pl.col("metric").alias("headline_metric"),
            pl.col("dimension").alias("headline_dimension"),
            pl.col("dimension_value").alias("headline_dimension_value"),
            "peak",
        )
    )
    spread = grouped.group_by("group").agg(
        pl.col("day").min().alias("start_day"),
        pl.col("day").max().alias("end_day"),
        pl.len().alias("n_points"),
        pl.struct("dimension", "dimension_value").n_unique().alias("n_scopes"),
        pl.col("score").abs().max().alias("peak_all"),
        pl.col("metric").unique().sort().alias("metrics"),
    )
    direction = pl.when(pl.col("peak") > 0).then(pl.lit("spike")).otherwise(pl.lit("drop"))
    return (
        spread.join(evidence, on="group")
        .with_columns(direction.alias("direction"))
        .with_columns(
            pl.format(
                "{}-{}-{}", pl.col("start_day"), pl.col("headline_metric"), pl.col("direction")
            ).alias("incident_id")
        )
        .sort("start_day")
    )


def _window_rows(heads: pl.DataFrame, history: pl.DataFrame, series: pl.DataFrame) -> pl.DataFrame:
    """The scored rows of each incident's days and metrics with the series' numerator and
    denominator (0 without), in the history's order within an incident (so every sum below
    adds in one order whatever the history's length). Only the incidents' days are joined."""
    cells = (
        heads.select(
            "group",
            pl.col("metrics").alias("metric"),
            pl.date_ranges("start_day", "end_day").alias("day"),
        )
        .explode("metric")
        .explode("day")
    )
    scored = (
        history.select(*_SERIES_KEY, "value", "expected", "has_baseline")
        .with_row_index("_row")
        .filter(pl.col("has_baseline"))
        .join(cells, on=["metric", "day"])
    )
    weights = series.select(*_SERIES_KEY, "numerator", "denominator").join(
        cells.select("metric", "day").unique(), on=["metric", "day"], how="semi"
    )
    return (
        scored.join(weights, on=_SERIES_KEY, how="left")
        .select(
            "group",
            "_row",
            *_SERIES_KEY,
            "value",
            "expected",
            pl.col("numerator").fill_null(0.0),
            pl.col("denominator").fill_null(0.0),
        )
        .sort("group", "_row")
        .drop("_row")
    )


def _pooled(rows: pl.DataFrame) -> pl.DataFrame:
    """Per incident: (observed, expected) of its headline series over its days: pooled for
    rates, daily means otherwise; (0, 0) without rows or denominator."""
    n = pl.col("denominator").sum()
    is_rate = _kind(pl.col("metric").first()) == RATE
    return (
        rows.with_columns(_run("group"))
        .group_by("_run")
        .agg(
            pl.col("group").first(),
            pl.when(is_rate)
            .then(pl.when(n != 0).then(pl.col("numerator").sum() / n).otherwise(0.0))
            .otherwise(pl.col("value").mean())
            .alias("observed"),
            pl.when(is_rate)
            .then(
                pl.when(n != 0)
                .then((pl.col("expected") * pl.col("denominator")).sum() / n)
                .otherwise(0.0)
            )
            .otherwise(pl.col("expected").mean())
            .alias("expected"),
        )
        .drop("_run")
    )


def _contributions(rows: pl.DataFrame) -> pl.DataFrame:
    """Per incident x metric x dimension (not ``all``, at least two values) x value: observed,
    expected, its contribution to the change in the metric's own units, its share of the
    contributions going the same way as the total, and its rank (share first; equal shares by
    change, largest first when the total falls and smallest first when it rises, then by value).
    ``rows``: group, metric, dimension, dimension_value, value, expected, numerator and
    denominator, each incident's rows in the history's order."""
    part = ["group", "metric", "dimension"]
    rows = rows.with_row_index("_row")  # a part's first row orders dimensions outside the known
    weights = (
        rows.filter(pl.col("dimension") == "all")
        .sort("group", "metric", "_row")
        .group_by(_run("group", "metric"))
        .agg(
            pl.col("group").first(),
            pl.col("metric").first(),
            pl.col("denominator").sum().alias("weight"),
        )
        .drop("_run")
    )
    per_value = (
        rows.filter(pl.col("dimension") != "all")
        .filter(pl.col("dimension_value").n_unique().over(part) >= 2)
        .group_by(*part, "dimension_value")
        .agg(
            _kind(pl.col("metric").first()).alias("kind"),
            pl.col("_row").min().alias("first_row"),
            pl.col("numerator").sum().alias("k"),
            pl.col("denominator").sum().alias("n"),
            (pl.col("expected") * pl.col("denominator")).sum().alias("e"),
            pl.col("value").mean().alias("obs"),
            pl.col("expected").mean().alias("exp"),
            ((pl.col("value") - pl.col("expected")) * pl.col("denominator")).sum().alias("wdiff"),
        )
        .join(weights, on=["group", "metric"], how="left")
        # Divisions by a part's total multiply by its reciprocal, as polars divides a column by
        # a number (the last digit of a plain division can differ).
        .with_columns(
            (1.0 / pl.col("weight").fill_null(0.0).clip(lower_bound=1e-12)).alias("per_weight")
        )
        .sort(*part, "dimension_value")
    )
    n = pl.col("n")
    is_rate = pl.col("kind") == RATE
    is_duration = (pl.col("kind") == LOG) & (pl.col("metric") != "revenue")
    contributions = per_value.select(
        _run(*part),
        *part,
        "dimension_value",
        pl.col("first_row").min().over(part).alias("first_row"),
        pl.when(is_rate)
        .then(pl.when(n > 0).then(pl.col("e") / n).otherwise(0.0))
        .otherwise(pl.col("exp"))
        .alias("expected"),
        pl.when(is_rate)
        .then(pl.when(n > 0).then(pl.col("k") / n).otherwise(0.0))
        .otherwise(pl.col("obs"))
        .alias("observed"),
        pl.when(is_rate)
        .then((pl.col("k") - pl.col("e")) * pl.col("per_weight"))
        .when(is_duration)
        .then(pl.col("wdiff") * pl.col("per_weight"))
        .otherwise(pl.col("obs") - pl.col("exp"))
        .alias("change"),
    )
    total = pl.col("change").sum().over("_run")
    falls = total.is_nan() | (total < 0)
    same_way = (pl.col("change") * pl.when(falls).then(-1.0).otherwise(1.0)).clip(lower_bound=0.0)
    denom = same_way.sum().over("_run")
    return (
        contributions.with_columns(
            pl.when((denom > 0) & denom.is_not_nan())
            .then(same_way * (1.0 / denom))
            .otherwise(same_way * 0.0)
            .alias("share"),
            pl.when(falls).then(pl.col("change")).alias("_change_desc"),
            pl.when(~falls).then(pl.col("change")).alias("_change_asc"),
        )
        .sort(  # ties (equal shares are common on small sites) ranked by value, never by chance
            *part,
            "share",
            "_change_desc",
            "_change_asc",
            "dimension_value",
            descending=[False, False, False, True, True, False, False],
        )
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(part).alias("rank"))
        .drop("_run", "_change_desc", "_change_asc")
    )


def _top_contributors(heads: pl.DataFrame, ranked: pl.DataFrame) -> dict[int, tuple[str, float]]:
    """Per incident: its headline metric's first-ranked value with the largest share, the
    dimensions taken in _DIMENSION_ORDER (the first on a tie)."""
    firsts = (
        ranked.filter(pl.col("rank") == 1)
        .join(
            heads.select("group", pl.col("headline_metric").alias("metric")),
            on=["group", "metric"],
        )
        .with_columns(
            pl.col("dimension")
            .replace_strict(_DIMENSION_ORDER, default=9, return_dtype=pl.Int64)
            .alias("order")
        )
        .sort("group", "order", "first_row")
    )
    tops: dict[int, tuple[str, float]] = {}
    for group, dimension, value, share in firsts.select(
        "group", "dimension", "dimension_value", "share"
    ).iter_rows():
        if group not in tops or share > tops[group][1]:
            tops[group] = (f"{dimension}={value}", float(share))
    return tops


def _describe(head: dict, observed: float, expected: float, change: float, top) -> str:
    metric, start, end = head["headline_metric"], head["start_day"], head["end_day"]
    scope = (
        ""
        if head["headline_dimension"] == "all"
        else f" ({head['headline_dimension']}={head['headline_dimension_value']})"
    )
    verb = "rose" if change > 0 else "fell"
    text = (
        f"{ANOMALY_METRIC_LABELS.get(metric, metric)}{scope} {verb} {abs(change):.0%} "
        f"({_format(metric, observed)} vs {_format(metric, expected)} expected) "
        f"from {start:%-d %b} to {end:%-d %b}"
    )
    if top is not None and top[1]:
        what = "rise" if head["direction"] == "spike" else "drop"
        text += f"; {top[0].split('=', 1)[1]} accounts for {top[1]:.0%} of the {what}"
    return text + "."


def build_incidents(
    history: pl.DataFrame, series: pl.DataFrame, settings: DetectorSettings
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history with incident_id, incidents newest first, incident_contributors newest
    incident first, then by metric, dimension and rank)."""
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
    heads = _headlines(grouped)
    rows = _window_rows(heads, history, series)
    headline_rows = rows.join(
        heads.select(
            "group",
            pl.col("headline_metric").alias("metric"),
            pl.col("headline_dimension").alias("dimension"),
            pl.col("headline_dimension_value").alias("dimension_value"),
        ),
        on=["group", "metric", "dimension", "dimension_value"],
        maintain_order="left",
    )
    pooled = dict(
        (g, (o, e))
        for g, o, e in _pooled(headline_rows).select("group", "observed", "expected").iter_rows()
    )
    ranked = _contributions(rows)
    tops = _top_contributors(heads, ranked)
    incidents = []
    for head in heads.iter_rows(named=True):
        observed, expected = pooled.get(head["group"], (0.0, 0.0))
        change = observed / expected - 1 if expected else 0.0
        top = tops.get(head["group"])
        ratio = head["peak_all"] / settings.threshold
        incidents.append(
            {
                **{c: head[c] for c in ("incident_id", "start_day", "end_day")},
                "days": (head["end_day"] - head["start_day"]).days + 1,
                "ongoing": head["end_day"] == last_day,
                "headline_metric": head["headline_metric"],
                "headline_label": ANOMALY_METRIC_LABELS.get(
                    head["headline_metric"], head["headline_metric"]
                ),
                "direction": head["direction"],
                "headline_dimension": head["headline_dimension"],
                "headline_dimension_value": head["headline_dimension_value"],
                "expected": expected,
                "observed": observed,
                "relative_change": float(np.nan_to_num(change)),
                "peak_score": float(head["peak"]),
                "severity": "low" if ratio < 1.5 else "medium" if ratio < 2.5 else "high",
                "metrics": head["metrics"],
                "n_points": head["n_points"],
                "n_scopes": head["n_scopes"],
                "top_contributor": top[0] if top else None,
                "top_share": top[1] if top else None,
                "description": _describe(head, observed, expected, change, top),
            }
        )
    table = pl.DataFrame(incidents, schema=INCIDENTS_SCHEMA).sort("start_day", descending=True)
    floats = [c for c, t in CONTRIBUTORS_SCHEMA.items() if t == pl.Float64]
    contrib = (
        ranked.join(heads.select("group", "incident_id", "start_day"), on="group")
        .with_columns(
            pl.col("dimension")
            .replace_strict(_DIMENSION_ORDER, default=9, return_dtype=pl.Int64)
            .alias("_order")
        )
        .sort(
            ["start_day", "metric", "_order", "first_row", "rank"],
            descending=[True, False, False, False, False],
        )
        .select(list(CONTRIBUTORS_SCHEMA))
        .cast(CONTRIBUTORS_SCHEMA)
        .with_columns([pl.col(c).fill_nan(0.0).fill_null(0.0) for c in floats])
    )
    ids = grouped.join(heads.select("group", "incident_id"), on="group").select(
        *_SERIES_KEY, pl.col("incident_id").alias("_incident")
    )
    keyed = (
        history.join(ids, on=_SERIES_KEY, how="left")
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
