"""Anomaly detection on daily metrics: two robust, seasonality-aware detectors and an ensemble.

Dagster-free; numpy over small frames (one series = one scope x metric, one value per day).

- ``seasonal``: the residual of a day against the median of the same weekday in the previous
  ``baseline_weeks`` weeks, centred and scaled by the median / MAD of the residuals of the
  previous ``scale_window_days`` days (a robust z-score).
- ``level``: the trailing ``level_window_days`` median (a de-seasonalised level, one of each
  weekday) times the median same-weekday ratio to that level, scored the same way. It follows
  level shifts within a week, where the seasonal baseline needs several weeks.
- ``ensemble``: the mean of the two scores; a point is flagged when that mean passes the
  threshold and both detectors agree on the direction with at least half the threshold each.

Baselines and spreads only read the past, in two passes: the second replaces the points the
first flagged by their expectation, so one anomaly does not distort the following weeks.
Days without enough history (warm-up) get ``has_baseline = False``, scores 0 and no flag.
"""

import warnings
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

# Daily metrics the detectors watch (daily_trends columns); counts get a Poisson scale floor.
MONITORED: tuple[str, ...] = (
    "active_users",
    "sessions",
    "page_views",
    "events",
    "conversion_rate",
    "bounce_rate",
    "revenue",
    "mean_session_duration_s",
)
COUNT_METRICS = frozenset({"active_users", "sessions", "page_views", "events"})
RATE_METRICS = frozenset({"conversion_rate", "bounce_rate"})
DETECTORS: tuple[str, ...] = ("seasonal", "level", "ensemble")
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the detectors (the asset's dg.Config passes them through)."""

    threshold: float = 4.0  # |robust z| that flags a point: the sensitivity
    baseline_weeks: int = 4  # same-weekday values in the seasonal baseline
    min_baseline_weeks: int = 2  # fewer same-weekday values than this: no baseline yet
    level_window_days: int = 7  # trailing days of the level detector
    scale_window_days: int = 28  # trailing residuals that estimate the spread
    min_scale_points: int = 7  # fewer residuals than this: no score yet
    min_relative_scale: float = 0.02  # the spread is at least this share of the expected value
    min_daily_sessions: float = 30.0  # scopes with a median below this are too small to score

    def problems(self) -> list[str]:
        out = []
        if not self.threshold > 0:
            out.append(f"threshold must be > 0 (got {self.threshold})")
        for name in (
            "baseline_weeks",
            "min_baseline_weeks",
            "level_window_days",
            "scale_window_days",
            "min_scale_points",
        ):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.min_baseline_weeks > self.baseline_weeks:
            out.append("min_baseline_weeks must not exceed baseline_weeks")
        if self.min_scale_points > self.scale_window_days:
            out.append("min_scale_points must not exceed scale_window_days")
        if self.min_relative_scale < 0:
            out.append("min_relative_scale must be >= 0")
        if self.min_daily_sessions < 0:
            out.append("min_daily_sessions must be >= 0")
        return out

    @property
    def warmup_days(self) -> int:
        """Days of history before the first day that can be scored."""
        seasonal = 7 * self.min_baseline_weeks + self.min_scale_points
        level = max(self.level_window_days, 7 * self.min_baseline_weeks) + self.min_scale_points
        return max(seasonal, level)


def _lagged(x: np.ndarray, lags: list[int]) -> np.ndarray:
    """(n, len(lags)) matrix of x[t - lag], NaN where t - lag < 0."""
    n = len(x)
    out = np.full((n, len(lags)), np.nan)
    for j, lag in enumerate(lags):
        if lag < n:
            out[lag:, j] = x[: n - lag]
    return out


def _trailing(x: np.ndarray, window: int) -> np.ndarray:
    """(n, window) matrix of x[t - window .. t - 1], NaN-padded at the start."""
    return _lagged(x, list(range(1, window + 1)))


def _nanmedian(m: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(m, axis=1) if m.shape[1] else np.full(m.shape[0], np.nan)


def _robust_z(
    x: np.ndarray, ref: np.ndarray, base: np.ndarray, floor: np.ndarray, settings: DetectorSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score x against base; the spread is the trailing median/MAD of the residuals of the
    reference series (past anomalies replaced by their expectation)."""
    window = _trailing(ref - base, settings.scale_window_days)
    count = np.sum(~np.isnan(window), axis=1)
    center = _nanmedian(window)
    mad = _nanmedian(np.abs(window - center[:, None]))
    scale = np.fmax(_MAD_TO_SIGMA * mad, floor)
    ok = ~np.isnan(base) & (count >= settings.min_scale_points)
    expected = base + np.where(ok, center, 0.0)
    z = np.where(ok, (x - expected) / np.where(scale > 0, scale, 1.0), 0.0)
    return np.where(ok, z, 0.0), np.where(ok, expected, np.nan), np.where(ok, scale, np.nan)


def _score_once(
    x: np.ndarray, ref: np.ndarray, metric: str, settings: DetectorSettings
) -> dict[str, np.ndarray]:
    """Both detectors and the ensemble; baselines and spreads read only the past of ``ref``."""
    floor_abs = 1.0 if metric in COUNT_METRICS else 1e-9

    def floor(expected: np.ndarray) -> np.ndarray:
        e = np.abs(np.nan_to_num(expected))
        f = np.fmax(settings.min_relative_scale * e, floor_abs)
        if metric in COUNT_METRICS:
            f = np.fmax(f, np.sqrt(e))  # Poisson noise
        return f

    # Detector 1: same weekday in the previous weeks.
    same_day = _lagged(ref, [7 * k for k in range(1, settings.baseline_weeks + 1)])
    n_weeks = np.sum(~np.isnan(same_day), axis=1)
    base1 = np.where(n_weeks >= settings.min_baseline_weeks, _nanmedian(same_day), np.nan)
    z1, e1, sc1 = _robust_z(x, ref, base1, floor(base1), settings)

    # Detector 2: trailing median level x same-weekday ratio to the level.
    trail = _trailing(ref, settings.level_window_days)
    full = np.sum(~np.isnan(trail), axis=1) == settings.level_window_days
    level = np.where(full, _nanmedian(trail), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(level > 0, ref / level, np.nan)
    past_ratio = _lagged(ratio, [7 * k for k in range(1, settings.baseline_weeks + 1)])
    n_ratio = np.sum(~np.isnan(past_ratio), axis=1)
    factor = np.where(n_ratio >= settings.min_baseline_weeks, _nanmedian(past_ratio), 1.0)
    base2 = level * factor
    z2, e2, sc2 = _robust_z(x, ref, base2, floor(base2), settings)

    has = ~np.isnan(e1) & ~np.isnan(e2)
    score = np.where(has, (z1 + z2) / 2.0, 0.0)
    agree = (np.sign(z1) == np.sign(z2)) & (
        np.minimum(np.abs(z1), np.abs(z2)) >= settings.threshold / 2
    )
    flag = has & (np.abs(score) >= settings.threshold) & agree
    expected = np.where(has, (e1 + e2) / 2.0, x)
    scale = np.where(has, (sc1 + sc2) / 2.0, 0.0)
    lower = expected - settings.threshold * scale
    upper = expected + settings.threshold * scale
    if metric in RATE_METRICS:
        lower, upper = np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)
    else:
        lower = np.fmax(lower, 0.0)
    return {
        "value": x,
        "expected": expected,
        "lower": np.where(has, lower, x),
        "upper": np.where(has, upper, x),
        "seasonal_score": np.where(has, z1, 0.0),
        "level_score": np.where(has, z2, 0.0),
        "score": score,
        "seasonal_flag": has & (np.abs(z1) >= settings.threshold),
        "level_flag": has & (np.abs(z2) >= settings.threshold),
        "is_anomaly": flag,
        "has_baseline": has,
    }


def score_series(x: np.ndarray, metric: str, settings: DetectorSettings) -> dict[str, np.ndarray]:
    """Score one daily series (consecutive days, no gaps).

    Two passes: the second recomputes every baseline from a history in which the points the
    first pass flagged are replaced by their expectation, so an anomaly does not distort the
    baseline of the weeks after it (two anomalies on the same weekday would otherwise move the
    same-weekday median).
    """
    x = np.asarray(x, dtype=float)
    out = _score_once(x, x, metric, settings)
    if out["is_anomaly"].any():
        ref = np.where(out["is_anomaly"], out["expected"], x)
        out = _score_once(x, ref, metric, settings)
    return out


def _unscored(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = out["value"]
    zeros, no = np.zeros_like(x), np.zeros(len(x), dtype=bool)
    return {
        **out,
        "expected": x,
        "lower": x,
        "upper": x,
        "seasonal_score": zeros,
        "level_score": zeros,
        "score": zeros,
        "seasonal_flag": no,
        "level_flag": no,
        "is_anomaly": no,
        "has_baseline": no,
    }


HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "dimension": pl.String,
    "dimension_value": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "expected": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "seasonal_score": pl.Float64,
    "level_score": pl.Float64,
    "score": pl.Float64,
    "seasonal_flag": pl.Boolean,
    "level_flag": pl.Boolean,
    "is_anomaly": pl.Boolean,
    "direction": pl.String,
    "severity": pl.String,
    "has_baseline": pl.Boolean,
}


def series_frame(daily: pl.DataFrame, segments: pl.DataFrame | None = None) -> pl.DataFrame:
    """Complete days of daily_trends (+ segment_trends as dimension 'segment'), one row per
    day x scope, metric columns wide."""
    cols = ["day", "dimension", "dimension_value", *MONITORED]
    parts = [daily.filter(pl.col("is_complete")).select(cols)]
    if segments is not None and segments.height:
        seg = segments.filter(pl.col("is_complete") & (pl.col("segment_id") != "all"))
        parts.append(
            seg.select(
                "day",
                pl.lit("segment").alias("dimension"),
                pl.col("segment_name").alias("dimension_value"),
                *MONITORED,
            )
        )
    return pl.concat(parts, how="vertical_relaxed").sort("dimension", "dimension_value", "day")


def detect(series: pl.DataFrame, settings: DetectorSettings) -> pl.DataFrame:
    """anomaly_history: every complete day x scope x monitored metric, scored."""
    if series.height == 0:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    frames = []
    for (dimension, value), part in series.group_by(
        ["dimension", "dimension_value"], maintain_order=True
    ):
        part = part.sort("day")
        # Fill calendar gaps so lags are whole weeks (a missing complete day is a zero day).
        days = pl.DataFrame(
            {"day": pl.date_range(part["day"].min(), part["day"].max(), "1d", eager=True)}
        )
        part = days.join(part, on="day", how="left").with_columns(
            [pl.col(m).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for m in MONITORED]
        )
        # Tiny scopes (a rare device, a small segment) are noise, not signal: not scored.
        too_small = float(part["sessions"].median() or 0.0) < settings.min_daily_sessions
        for metric in MONITORED:
            out = score_series(part[metric].to_numpy(), metric, settings)
            if too_small:
                out = _unscored(out)
            frames.append(
                pl.DataFrame(
                    {
                        "day": part["day"],
                        "dimension": [dimension] * part.height,
                        "dimension_value": [value] * part.height,
                        "metric": [metric] * part.height,
                        **out,
                    }
                )
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
    )
    floats = [c for c, t in HISTORY_SCHEMA.items() if t == pl.Float64]
    frame = frame.with_columns([pl.col(c).fill_nan(0.0).fill_null(0.0) for c in floats])
    return frame.select(list(HISTORY_SCHEMA)).cast(HISTORY_SCHEMA)


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


# --- scoring against the generator's planted anomalies ----------------------------------------

SCORES_SCHEMA: dict[str, pl.DataType] = {
    "detector": pl.String,
    "kind": pl.String,
    "injected": pl.Int64,
    "detected": pl.Int64,
    "false_positives": pl.Int64,
    "precision": pl.Float64,
    "recall": pl.Float64,
    "f1": pl.Float64,
    "note": pl.String,
}


def _precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score_detection(history: pl.DataFrame, injected: pl.DataFrame) -> tuple[pl.DataFrame, list]:
    """Precision / recall / F1 per anomaly kind and overall, per detector, on dimension 'all'.

    A planted anomaly (day, metric, direction) is detected when the detector flags that metric
    on that day in that direction. A false positive is a flag on a day with nothing planted, on
    a metric some planted anomaly targets (flags on other metrics of a planted day are side
    effects, not errors). Planted days without a baseline (warm-up) cannot be scored.
    """
    notes: list[str] = []
    if injected.height == 0:
        notes.append("injected_anomalies is empty (no ground truth): scoring skipped")
        return pl.DataFrame(schema=SCORES_SCHEMA), notes
    overall = history.filter((pl.col("dimension") == "all") & pl.col("has_baseline"))
    scored_days = set(overall["day"].to_list())
    truth = injected.select("anomaly_date", "kind", "metric", "direction")
    unscored = truth.filter(~pl.col("anomaly_date").is_in(list(scored_days)))
    if unscored.height:
        notes.append(
            f"{unscored.height} planted anomaly(ies) fall outside the scored days (warm-up or "
            "incomplete day) and are not counted"
        )
    truth = truth.filter(pl.col("anomaly_date").is_in(list(scored_days)))
    planted_days = set(injected["anomaly_date"].to_list())
    target_metrics = sorted(set(truth["metric"].to_list()) | set(injected["metric"].to_list()))
    flag_col = {"seasonal": "seasonal_flag", "level": "level_flag", "ensemble": "is_anomaly"}
    score_col = {"seasonal": "seasonal_score", "level": "level_score", "ensemble": "score"}
    rows = []
    match_note = "flag on the planted metric, day and direction; FP = flag on an unplanted day"
    for det in DETECTORS:
        flags = overall.filter(pl.col(flag_col[det])).select(
            "day",
            "metric",
            pl.when(pl.col(score_col[det]) > 0)
            .then(pl.lit("spike"))
            .otherwise(pl.lit("drop"))
            .alias("dir"),
        )
        flagged = set(flags.iter_rows())
        fp_set = {f for f in flagged if f[0] not in planted_days and f[1] in target_metrics}
        tot_tp = tot_fn = 0
        for kind in sorted(set(injected["kind"].to_list())):
            t = truth.filter(pl.col("kind") == kind)
            tp = sum((d, m, dr) in flagged for d, _, m, dr in t.iter_rows())
            fn = t.height - tp
            kind_metrics = set(injected.filter(pl.col("kind") == kind)["metric"].to_list())
            kind_dirs = set(injected.filter(pl.col("kind") == kind)["direction"].to_list())
            fp = sum(1 for d, m, dr in fp_set if m in kind_metrics and dr in kind_dirs)
            p, r, f = _precision_recall_f1(tp, fp, fn)
            rows.append((det, kind, t.height, tp, fp, p, r, f, match_note))
            tot_tp, tot_fn = tot_tp + tp, tot_fn + fn
        p, r, f = _precision_recall_f1(tot_tp, len(fp_set), tot_fn)
        rows.append((det, "overall", tot_tp + tot_fn, tot_tp, len(fp_set), p, r, f, match_note))
    return pl.DataFrame(rows, schema=SCORES_SCHEMA, orient="row"), notes


def history_notes(
    series: pl.DataFrame, history: pl.DataFrame, settings: DetectorSettings
) -> list[str]:
    """Human notes for the metadata: short history, empty days."""
    notes = []
    overall = series.filter(pl.col("dimension") == "all")
    n_days = overall.height
    if n_days == 0:
        notes.append("no complete day in daily_trends: nothing to score")
    elif n_days <= settings.warmup_days:
        notes.append(
            f"history of {n_days} complete day(s) is shorter than the detector window "
            f"({settings.warmup_days + 1} days): no day can be scored yet"
        )
    empty = overall.filter(pl.col("events") == 0)["day"].to_list() if n_days else []
    if empty:
        notes.append(f"{len(empty)} day(s) with no events: " + ", ".join(map(str, empty[:5])))
    small = (
        series.group_by("dimension", "dimension_value")
        .agg(pl.col("sessions").median().alias("m"))
        .filter(pl.col("m") < settings.min_daily_sessions)
    )
    if small.height:
        names = [f"{d}={v}" for d, v in small.select("dimension", "dimension_value").iter_rows()]
        notes.append(
            f"{small.height} scope(s) below {settings.min_daily_sessions:g} median daily "
            "sessions are not scored: " + ", ".join(names[:8])
        )
    scored = history.filter(pl.col("has_baseline") & (pl.col("dimension") == "all"))
    if scored.height:
        first: date = scored["day"].min()
        notes.append(f"scored from {first} (earlier days are the warm-up)")
    return notes
