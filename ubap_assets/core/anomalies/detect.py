"""anomaly_history: every complete day x scope x monitored metric scored by its noise model.

Series are laid out as (series x day) matrices per metric kind and scored together, one day at
a time (see ``noise``). Days a series cannot be scored carry a ``note`` with the real reason.
"""

import dataclasses
from dataclasses import dataclass, field
from datetime import date, timedelta

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


# What anomaly_state holds per series x day: the inputs (to see what changed), the scored
# columns of anomaly_history, the models' state (noise.PAST_STATE) and the settings that made
# them. Scoring resumes from it at the first day whose inputs changed.
STATE_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "dimension": pl.String,
    "dimension_value": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "numerator": pl.Float64,
    "denominator": pl.Float64,
    "units": pl.Float64,
    "expected": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "seasonal_score": pl.Float64,
    "level_score": pl.Float64,
    "score": pl.Float64,
    "seasonal_flag": pl.Boolean,
    "level_flag": pl.Boolean,
    "is_anomaly": pl.Boolean,
    "has_baseline": pl.Boolean,
    "note": pl.String,
    **{name: pl.Float64 for name in noise.PAST_STATE},
    "settings": pl.String,
}
SERIES_KEYS = ["dimension", "dimension_value", "metric"]
_INPUTS = ("value", "numerator", "denominator", "units")


def _score_kind(
    kind: str,
    metrics: np.ndarray,
    a: dict[str, np.ndarray],
    settings,
    start: int = 0,
    past: dict[str, np.ndarray] | None = None,
) -> noise.Scored:
    if kind == COUNT:
        return noise.score_counts(a["value"], settings, start, past)
    if kind == LOG:
        valid = a["denominator"] > 0
        cv2 = np.array([_LOG_NOISE_CV2[m] for m in metrics])
        return noise.score_logs(a["value"], a["units"], valid, cv2, settings, start, past)
    return noise.score_rates(a["numerator"], a["denominator"], settings, start, past)


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


def _settings_key(settings: DetectorSettings) -> str:
    return repr(sorted(dataclasses.asdict(settings).items()))


def _state_matrices(
    previous: pl.DataFrame, keys: pl.DataFrame, first: date, n_days: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The previous state on this run's series x calendar: which cells it has, and its arrays."""
    indexed = (
        previous.join(keys, on=SERIES_KEYS)
        .with_columns((pl.col("day") - pl.lit(first)).dt.total_days().alias("_col"))
        .filter(pl.col("_col").is_between(0, n_days - 1))
    )
    rows, cols = indexed["_row"].to_numpy(), indexed["_col"].to_numpy()
    held = np.zeros((keys.height, n_days), bool)
    held[rows, cols] = True
    arrays = {}
    for column in (*_INPUTS, *noise.PAST_STATE, "has_baseline"):
        m = np.zeros((keys.height, n_days), bool if column == "has_baseline" else float)
        m[rows, cols] = indexed[column].to_numpy()
        arrays[column] = m
    arrays["scored"] = arrays.pop("has_baseline")
    return held, arrays


def _resume_days(
    kind: str,
    a: dict[str, np.ndarray],
    held: np.ndarray,
    past: dict[str, np.ndarray],
    recompute_from: int,
    settings: DetectorSettings,
) -> np.ndarray:
    """Per series: the first day to score again, the first whose inputs differ from the
    previous run's (or ``recompute_from``, if earlier)."""
    same = held.copy()
    for column in _INPUTS:
        same &= a[column] == past[column]
    n_days = held.shape[1]
    differs = ~same
    first = np.where(differs.any(axis=1), differs.argmax(axis=1), n_days)
    first = np.minimum(first, recompute_from)
    if kind == LOG:  # a log scale that became known since: that series from its first day
        _, known_from = noise.log_offset(a["value"], a["denominator"] > 0, settings)
        first = np.where((known_from >= first) & (known_from < n_days), 0, first)
    return first


def _state_frame(
    kind: str,
    keys: pl.DataFrame,
    days: list,
    a: dict[str, np.ndarray],
    out: noise.Scored,
    settings: DetectorSettings,
    start: int,
) -> pl.DataFrame:
    """The days from ``start`` of these series, as anomaly_state rows."""
    metrics = keys["metric"].to_numpy()
    notes = _notes(kind, metrics, a, out.scored, settings)[:, start:]
    n_series, n_days = out.score.shape
    width = n_days - start
    threshold = settings.threshold

    def cut(m: np.ndarray) -> np.ndarray:
        return m[:, start:].ravel()

    return pl.DataFrame(
        {
            "day": np.tile(np.array(days[start:], dtype="datetime64[D]"), n_series),
            "dimension": np.repeat(keys["dimension"].to_numpy(), width),
            "dimension_value": np.repeat(keys["dimension_value"].to_numpy(), width),
            "metric": np.repeat(metrics, width),
            **{column: cut(a[column]) for column in _INPUTS},
            "expected": cut(out.expected),
            "lower": cut(out.lower),
            "upper": cut(out.upper),
            "seasonal_score": cut(out.day_score),
            "level_score": cut(out.window_score),
            "score": cut(out.score),
            "seasonal_flag": cut(out.scored & (np.abs(out.day_score) >= threshold)),
            "level_flag": cut(out.scored & (np.abs(out.window_score) >= threshold)),
            "is_anomaly": cut(out.flag),
            "has_baseline": cut(out.scored),
            "note": pl.Series(notes.ravel().tolist(), dtype=pl.String),
            **{name: cut(out.past[name]) for name in noise.PAST_STATE},
        }
    ).with_columns(pl.col("day").cast(pl.Date), pl.lit(_settings_key(settings)).alias("settings"))


@dataclass(frozen=True)
class Detection:
    """anomaly_history (without incident ids), the state to resume from next time, and how
    many series x days were scored in this run (the rest came from the previous state).

    ``rescored``: the state's rows scored in this run; with ``resumed_from_previous`` the
    stored state becomes ``state`` by replacing those rows and dropping rows no longer in it."""

    history: pl.DataFrame
    state: pl.DataFrame
    scored_cells: int
    resumed_series: int
    rescored: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=STATE_SCHEMA))
    resumed_from_previous: bool = False


def detect_from(
    series: pl.DataFrame,
    settings: DetectorSettings,
    previous: pl.DataFrame | None = None,
    recompute_from: date | None = None,
) -> Detection:
    """Score the series, resuming from ``previous`` (a former run's state) where it can.

    Each series is scored again from the first day whose inputs differ from the previous
    state's (a day added, a day re-aggregated, a segment re-assigned) or from
    ``recompute_from``, whichever is earlier; the days before keep the previous state's rows.
    The result equals scoring the whole history: every model reads only the past, through the
    state it carries from day to day (noise.PAST_STATE), and series are scored independently.
    Without ``previous`` (or with other settings), everything is scored.
    """
    if series.height == 0:
        empty = pl.DataFrame(schema=STATE_SCHEMA)
        return Detection(pl.DataFrame(schema=HISTORY_SCHEMA), empty, 0, 0)
    series = series.cast(SERIES_SCHEMA)
    # A state written by another version or with other settings: score everything.
    if previous is not None and (
        previous.height == 0
        or previous.columns != list(STATE_SCHEMA)
        or previous["settings"].unique().to_list() != [_settings_key(settings)]
    ):
        previous = None
    frames, spans, scored_cells, resumed = [], [], 0, 0
    # Series are scored per metric kind and span: a dimension's series share a calendar from
    # its first day (the segment series cover only the segment tables' trailing window).
    kinds = series.with_columns(
        pl.col("metric").replace_strict(METRIC_KINDS).alias("_kind")
    ).with_columns(pl.col("day").min().over("_kind", "dimension").alias("_from"))
    for kind, since in kinds.select("_kind", "_from").unique(maintain_order=True).iter_rows():
        part = kinds.filter((pl.col("_kind") == kind) & (pl.col("_from") == since))
        part = part.drop("_kind", "_from")
        keys, days, a = _matrices(part)
        spans.append(
            keys.select(SERIES_KEYS).with_columns(
                pl.lit(days[0]).alias("_first"), pl.lit(days[-1]).alias("_last")
            )
        )
        n_days = len(days)
        restart = np.zeros(keys.height, int)
        past = None
        if previous is not None:
            earlier = previous.join(keys.select(SERIES_KEYS), on=SERIES_KEYS, how="semi")
            # A span that starts on another day (a trailing window that moved): from scratch.
            if earlier.height and earlier["day"].min() == days[0]:
                limit = n_days if recompute_from is None else (recompute_from - days[0]).days
                held, past = _state_matrices(earlier, keys, days[0], n_days)
                restart = _resume_days(kind, a, held, past, max(limit, 0), settings)
        # A day's step costs about the same for few series as for many: the series resuming
        # last (the run's days) are scored together, all others together from the earliest.
        starts = [day for day in np.unique(restart).tolist() if day < n_days]
        groups = [(starts[-1], restart == starts[-1])] if starts else []
        if len(starts) > 1:
            groups.append((starts[0], restart < starts[-1]))
        for start, chosen in groups:
            rows = np.flatnonzero(chosen)
            sub_keys = keys[rows.tolist()]
            sub = {column: m[rows] for column, m in a.items()}
            sub_past = {column: m[rows] for column, m in past.items()} if start else None
            out = _score_kind(kind, sub_keys["metric"].to_numpy(), sub, settings, start, sub_past)
            frames.append(_state_frame(kind, sub_keys, days, sub, out, settings, start))
            scored_cells += rows.size * (n_days - start)
            resumed += rows.size if start else 0
    rescored = pl.concat(frames).cast(STATE_SCHEMA) if frames else pl.DataFrame(schema=STATE_SCHEMA)
    state = _merge(previous, rescored, pl.concat(spans))
    return Detection(
        _history(state, settings),
        state,
        scored_cells,
        resumed,
        rescored=rescored,
        resumed_from_previous=previous is not None,
    )


def _merge(previous: pl.DataFrame | None, new: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """The new rows over the previous state's, limited to the series x days scored now
    (``spans``: each series' first and last day); the days a series no longer covers go."""
    if previous is None:
        return new.sort(*SERIES_KEYS, "day")
    kept = (
        previous.cast(STATE_SCHEMA)
        .join(spans, on=SERIES_KEYS)
        .filter(pl.col("day").is_between(pl.col("_first"), pl.col("_last")))
        .drop("_first", "_last")
        .join(new.select(*SERIES_KEYS, "day"), on=[*SERIES_KEYS, "day"], how="anti")
    )
    return pl.concat([kept, new]).sort(*SERIES_KEYS, "day")


def _history(state: pl.DataFrame, settings: DetectorSettings) -> pl.DataFrame:
    """anomaly_history's columns of the state: direction, severity, no NaN."""
    ratio = pl.col("score").abs() / settings.threshold
    frame = state.with_columns(
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


def detect(series: pl.DataFrame, settings: DetectorSettings) -> pl.DataFrame:
    """anomaly_history (without incident ids): every day x scope x metric, scored."""
    return detect_from(series, settings).history


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
    segment = history.filter(pl.col("dimension") == "segment")
    if segment.height:
        first, last = segment["day"].min(), segment["day"].max()
        scored_from = segment.filter(pl.col("has_baseline"))["day"].min()
        warm_up = (
            f"scored from {scored_from}, its first days are the warm-up"
            if scored_from is not None
            else "all warm-up so far"
        )
        notes.append(
            f"segment series cover {first} .. {last}, the segment tables' trailing window "
            f"(UBAP_SEGMENT_TREND_DAYS) under today's segments: {warm_up}"
        )
    return notes
