"""anomaly_history: every complete day x scope x monitored metric scored by its noise model.

Series are laid out as (series x day) matrices per metric kind and scored together, one day at
a time (see ``noise``). Days a series cannot be scored carry a ``note`` with the real reason.
"""

from datetime import timedelta

import numpy as np
import polars as pl

from ubap_assets.core.anomalies import noise
from ubap_assets.core.anomalies.series import SERIES_SCHEMA
from ubap_assets.core.anomalies.settings import COUNT, LOG, METRIC_KINDS, DetectorSettings

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "dimension": pl.String,
    "dimension_value": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "expected": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "seasonal_score": pl.Float64,  # single-day evidence (signed z)
    "level_score": pl.Float64,  # evidence pooled over the last max_window_days days
    "score": pl.Float64,  # the strongest evidence agreeing with the day's direction, |z| <= 50
    "seasonal_flag": pl.Boolean,
    "level_flag": pl.Boolean,
    "is_anomaly": pl.Boolean,
    "direction": pl.String,
    "severity": pl.String,
    "has_baseline": pl.Boolean,
    "incident_id": pl.String,  # the incident a flagged point belongs to
    "note": pl.String,  # why a point has no score
}
# What the noise floor of the log-scale metrics assumes: the squared coefficient of variation
# of one unit (a purchase's revenue, a session's page views, events or duration).
_LOG_NOISE_CV2 = {"revenue": 4.0, "mean_session_duration_s": 2.0, "page_views": 2.0, "events": 2.0}


def _matrices(series: pl.DataFrame) -> tuple[pl.DataFrame, list, dict[str, np.ndarray]]:
    """Keys (one row per series), the calendar and (series x day) arrays of each input column.
    A day missing from a series is a day with nothing: zero value, zero denominator."""
    first, last = series["day"].min(), series["day"].max()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    keys = (
        series.select("dimension", "dimension_value", "metric")
        .unique()
        .sort("metric", "dimension", "dimension_value")
        .with_row_index("_row")
    )
    indexed = series.join(keys, on=["dimension", "dimension_value", "metric"]).with_columns(
        (pl.col("day") - pl.lit(first)).dt.total_days().alias("_col")
    )
    rows, cols = indexed["_row"].to_numpy(), indexed["_col"].to_numpy()
    arrays = {}
    for column in ("value", "numerator", "denominator", "units"):
        m = np.zeros((keys.height, len(days)))
        m[rows, cols] = indexed[column].fill_null(0.0).fill_nan(0.0).to_numpy()
        arrays[column] = m
    return keys, days, arrays


def _score_kind(kind: str, metrics: np.ndarray, a: dict[str, np.ndarray], settings) -> noise.Scored:
    if kind == COUNT:
        return noise.score_counts(a["value"], settings)
    if kind == LOG:
        valid = a["denominator"] > 0
        cv2 = np.array([_LOG_NOISE_CV2[m] for m in metrics])
        return noise.score_logs(a["value"], a["units"], valid, cv2, settings)
    return noise.score_rates(a["numerator"], a["denominator"], settings)


def _notes(
    kind: str, metrics: np.ndarray, a: dict[str, np.ndarray], scored: np.ndarray, settings
) -> np.ndarray:
    """Why each unscored point has no score."""
    n_series, n_days = scored.shape
    notes = np.full((n_series, n_days), None, dtype=object)
    need = settings.warmup_days if kind != "rate" else settings.rate_warmup_days
    for t in range(min(need, n_days)):
        notes[:, t] = f"warm-up: {t} of {need} days of history"
    if kind != COUNT:
        what = np.array(
            [
                f"no session reached the step before {m.removeprefix('funnel_')} that day"
                if m.startswith("funnel_")
                else "no sessions that day"
                for m in metrics
            ],
            dtype=object,
        )[:, None]
        notes = np.where(a["denominator"] <= 0, what, notes)
    rest = ~scored & (notes == None)  # noqa: E711 (elementwise on an object array)
    notes = np.where(rest, "not enough usable history yet (too few days with data)", notes)
    return np.where(scored, None, notes)


def detect(series: pl.DataFrame, settings: DetectorSettings) -> pl.DataFrame:
    """anomaly_history (without incident ids): every day x scope x metric, scored."""
    if series.height == 0:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    series = series.cast(SERIES_SCHEMA)
    frames = []
    kinds = series.with_columns(pl.col("metric").replace_strict(METRIC_KINDS).alias("_kind"))
    for kind in kinds["_kind"].unique(maintain_order=True).to_list():
        part = kinds.filter(pl.col("_kind") == kind).drop("_kind")
        keys, days, a = _matrices(part)
        metrics = keys["metric"].to_numpy()
        out = _score_kind(kind, metrics, a, settings)
        notes = _notes(kind, metrics, a, out.scored, settings)
        n_series, n_days = out.score.shape
        threshold = settings.threshold
        frames.append(
            pl.DataFrame(
                {
                    "day": np.tile(np.array(days, dtype="datetime64[D]"), n_series),
                    "dimension": np.repeat(keys["dimension"].to_numpy(), n_days),
                    "dimension_value": np.repeat(keys["dimension_value"].to_numpy(), n_days),
                    "metric": np.repeat(keys["metric"].to_numpy(), n_days),
                    "value": a["value"].ravel(),
                    "expected": out.expected.ravel(),
                    "lower": out.lower.ravel(),
                    "upper": out.upper.ravel(),
                    "seasonal_score": out.day_score.ravel(),
                    "level_score": out.window_score.ravel(),
                    "score": out.score.ravel(),
                    "seasonal_flag": (out.scored & (np.abs(out.day_score) >= threshold)).ravel(),
                    "level_flag": (out.scored & (np.abs(out.window_score) >= threshold)).ravel(),
                    "is_anomaly": out.flag.ravel(),
                    "has_baseline": out.scored.ravel(),
                    "note": pl.Series(notes.ravel(), dtype=pl.String),
                }
            ).with_columns(pl.col("day").cast(pl.Date))
        )
    frame = pl.concat(frames)
    ratio = pl.col("score").abs() / settings.threshold
    frame = frame.with_columns(
        pl.when(~pl.col("is_anomaly"))
        .then(pl.lit("none"))
        .when(pl.col("score") > 0)
        .then(pl.lit("spike"))
        .otherwise(pl.lit("drop"))
        .alias("direction"),
        pl.when(~pl.col("is_anomaly"))
        .then(pl.lit("none"))
        .when(ratio < 1.5)
        .then(pl.lit("low"))
        .when(ratio < 2.5)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("high"))
        .alias("severity"),
        pl.lit(None, pl.String).alias("incident_id"),
    )
    floats = [c for c, t in HISTORY_SCHEMA.items() if t == pl.Float64]
    frame = frame.with_columns([pl.col(c).fill_nan(0.0).fill_null(0.0) for c in floats])
    return (
        frame.select(list(HISTORY_SCHEMA))
        .cast(HISTORY_SCHEMA)
        .sort("dimension", "dimension_value", "metric", "day")
    )


def latest(history: pl.DataFrame, latest_days: int) -> pl.DataFrame:
    """anomalies: flagged points of the latest ``latest_days`` complete days, worst first."""
    schema = {**HISTORY_SCHEMA, "as_of": pl.Date}
    if history.height == 0:
        return pl.DataFrame(schema=schema)
    as_of = history["day"].max()
    start = as_of - timedelta(days=latest_days - 1)
    out = history.filter(pl.col("is_anomaly") & (pl.col("day") >= start)).with_columns(
        pl.lit(as_of).alias("as_of")
    )
    return out.sort(pl.col("score").abs(), descending=True).select(list(schema)).cast(schema)


def history_notes(series: pl.DataFrame, history: pl.DataFrame, settings) -> list[str]:
    """Human notes for the metadata: how much history, what could not be scored and why."""
    notes = []
    overall = series.filter((pl.col("dimension") == "all") & (pl.col("metric") == "sessions"))
    n_days = overall.select("day").n_unique()
    if n_days == 0:
        notes.append("no complete day in daily_trends: nothing to score")
        return notes
    if n_days <= settings.rate_warmup_days:
        notes.append(
            f"{n_days} complete day(s) of history: rates are scored from day "
            f"{settings.rate_warmup_days + 1}, counts, revenue and durations from day "
            f"{settings.warmup_days + 1}; nothing scored yet"
        )
    elif n_days <= settings.warmup_days:
        notes.append(
            f"{n_days} complete day(s) of history: rates are scored; counts, revenue and "
            f"durations need {settings.warmup_days + 1} days"
        )
    scoped = set(series["dimension"].unique().to_list())
    for dimension in ("device", "traffic_source"):
        if dimension not in scoped:
            notes.append(
                f"{dimension}: not scored on its own (one value or none in the data, so its "
                "series would repeat the overall ones)"
            )
    empty = overall.filter(pl.col("value") == 0)["day"].to_list()
    if empty:
        notes.append(f"{len(empty)} day(s) with no sessions: " + ", ".join(map(str, empty[:5])))
    unscored = history.filter(~pl.col("has_baseline") & pl.col("note").is_not_null())
    if unscored.height:
        reasons = (
            unscored.with_columns(pl.col("note").str.replace(r"^warm-up: .*", "warm-up"))
            .group_by("note")
            .len()
            .sort("len", descending=True)
        )
        notes.append(
            "points without a score: "
            + "; ".join(f"{n} ({r})" for r, n in reasons.select("note", "len").iter_rows())
        )
    scored = history.filter(pl.col("has_baseline") & (pl.col("dimension") == "all"))
    if scored.height:
        notes.append(f"scored from {scored['day'].min()} (earlier days are the warm-up)")
    return notes
