"""All the dashboard's data access: cached reads of the current serving snapshot.

Every helper takes the ``Snapshot`` the page resolved at the start of its run, so one page
render never mixes two snapshots and the cache (keyed by the snapshot's id and file) can never
be stale: a refresh publishes a new snapshot id and the next rerun reads that. Reads go through
the shared read module (``ubap_assets.warehouse.reader``); the dashboard never opens the
warehouse the pipeline writes, and holds no connection of its own between reruns.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.paths import snapshot_dir
from ubap_assets.warehouse.reader import (
    SnapshotMeta,
    SnapshotReader,
    UnreadableSnapshotError,
    resolve_snapshot,
)
from ubap_assets.warehouse.snapshots import (
    TABLE_STATUS,
    TABLE_STATUS_SCHEMA,
    NoSnapshotError,
    Snapshot,
)

# Snapshots are immutable, so a long TTL is safe; it only bounds memory.
_TTL = "1h"
_ENTRIES = 64

# Metrics of daily_trends / weekly_trends / segment_trends a person can pick, with labels.
TREND_METRICS: dict[str, str] = {
    "active_users": "Active users",
    "sessions": "Sessions",
    "page_views": "Page views",
    "events": "Events",
    "conversion_rate": "Conversion rate",
    "bounce_rate": "Bounce rate",
    "revenue": "Revenue",
    "purchases": "Purchases",
    "new_users": "New users",
    "returning_users": "Returning users",
    "mean_session_duration_s": "Mean session duration (s)",
    "pages_per_session": "Pages per session",
}
BREAKDOWNS: dict[str, str] = {
    "all": "All users",
    "device": "Device",
    "traffic_source": "Traffic source",
}
# Numeric user_features columns used for the 2-D map of users (log1p + standardised).
MAP_FEATURES: tuple[str, ...] = (
    "recency_days",
    "active_days",
    "sessions",
    "page_views",
    "pages_per_session",
    "avg_session_minutes",
    "bounce_rate",
    "product_share",
    "blog_share",
    "help_share",
    "add_to_cart_rate",
    "purchases",
    "revenue",
)
MAP_SAMPLE = 2000


class SnapshotChanged(RuntimeError):
    """The snapshot a page resolved was replaced and pruned mid-render: rerun the page."""


@dataclass(frozen=True)
class SnapshotInfo:
    meta: SnapshotMeta
    tables: frozenset[str]

    def has(self, *tables: str) -> bool:
        return all(name in self.tables for name in tables)


def current() -> Snapshot | None:
    """The snapshot the CURRENT pointer names now, or None when there is none to read (before
    the first publication, or a broken pointer or file: ``no_snapshot_reason`` says which)."""
    try:
        snap = resolve_snapshot(snapshot_dir())
        snapshot_info(snap)  # opens the file once (cached), so a damaged one is caught here
        return snap
    except NoSnapshotError:
        return None


def no_snapshot_reason() -> tuple[str, bool]:
    """Why there is nothing to show (the read module's message names the command to run), and
    whether that is because what was published cannot be read."""
    try:
        snapshot_info(resolve_snapshot(snapshot_dir()))
    except UnreadableSnapshotError as err:
        return str(err), True
    except NoSnapshotError as err:
        return str(err), False
    return "", False


def _query(snap: Snapshot, sql: str, params: list | None = None) -> pl.DataFrame:
    try:
        with SnapshotReader(snap) as reader:
            return reader.query(sql, params or [])
    except FileNotFoundError as err:  # pruned after a newer snapshot went live
        raise SnapshotChanged(str(err)) from err


def _contract(table: str) -> str:
    """A table name from the contract, safe to put into SQL as an identifier."""
    known = {*t.SERVING_TABLES, t.SNAPSHOT_META, t.CHECK_RESULTS, TABLE_STATUS}
    if table not in known:
        raise ValueError(f"{table!r} is not a serving table (see ubap_assets/warehouse/tables.py)")
    return f'"{table}"'


# --- the snapshot itself ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    try:
        with SnapshotReader(snap) as reader:
            return SnapshotInfo(meta=reader.meta(), tables=reader.tables)
    except FileNotFoundError as err:
        raise SnapshotChanged(str(err)) from err


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def table_status(snap: Snapshot) -> pl.DataFrame:
    """One row per served table: refreshed by the publishing run, or the reason it was not.
    Empty for snapshots published before the table existed."""
    try:
        with SnapshotReader(snap) as reader:
            if not reader.has_table(TABLE_STATUS):
                return pl.DataFrame(schema=TABLE_STATUS_SCHEMA)
            return reader.query(
                f"SELECT * FROM {_contract(TABLE_STATUS)} ORDER BY refreshed, table_name"
            )
    except FileNotFoundError as err:
        raise SnapshotChanged(str(err)) from err


def not_refreshed(snap: Snapshot) -> dict[str, str]:
    """Table name -> reason, for the served tables the publishing run did not refresh."""
    status = table_status(snap).filter(~pl.col("refreshed"))
    return {
        name: reason or "not refreshed"
        for name, reason in status.select("table_name", "reason").rows()
    }


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def table(snap: Snapshot, name: str, order_by: str | None = None) -> pl.DataFrame:
    """A whole (small) serving table; ``order_by`` is a trusted column list from this package."""
    order = f" ORDER BY {order_by}" if order_by else ""
    return _query(snap, f"SELECT * FROM {_contract(name)}{order}")


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def rejects(snap: Snapshot, limit: int = 1000) -> tuple[pl.DataFrame, int]:
    """The first ``limit`` rejected input rows and how many there are in all."""
    name = _contract(t.EVENT_REJECTS)
    rows = _query(snap, f"SELECT * FROM {name} ORDER BY source_file, row_number LIMIT ?", [limit])
    total = _query(snap, f"SELECT count(*) AS n FROM {name}")["n"][0]
    return rows, int(total)


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def row_counts(snap: Snapshot, names: tuple[str, ...]) -> pl.DataFrame:
    parts = [f"SELECT '{n}' AS table_name, count(*) AS rows FROM {_contract(n)}" for n in names]
    if not parts:
        return pl.DataFrame(schema={"table_name": pl.String, "rows": pl.Int64})
    return _query(snap, " UNION ALL ".join(parts) + " ORDER BY table_name")


# --- trends ---


def _metric(metric: str) -> str:
    if metric not in TREND_METRICS:
        raise ValueError(f"unknown metric {metric!r}: pick one of {', '.join(TREND_METRICS)}")
    return metric


def _breakdown(dimension: str) -> str:
    if dimension not in BREAKDOWNS:
        raise ValueError(f"unknown breakdown {dimension!r}: pick one of {', '.join(BREAKDOWNS)}")
    return dimension


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def trend_days(snap: Snapshot) -> tuple[date, date] | None:
    """First and last day in daily_trends."""
    frame = _query(snap, f"SELECT min(day) AS lo, max(day) AS hi FROM {_contract(t.DAILY_TRENDS)}")
    lo, hi = frame.row(0)
    return None if lo is None else (lo, hi)


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def trend_series(
    snap: Snapshot,
    metric: str,
    grain: str = "daily",
    dimension: str = "all",
    start: date | None = None,
    end: date | None = None,
) -> pl.DataFrame:
    """``day``, ``segment`` (the breakdown value), ``value`` and ``is_complete`` for one metric."""
    column = _metric(metric)
    table_name, day = (
        (t.DAILY_TRENDS, "day") if grain == "daily" else (t.WEEKLY_TRENDS, "week_start")
    )
    sql = (
        f'SELECT "{day}" AS day, dimension_value AS segment, "{column}" AS value, is_complete '
        f"FROM {_contract(table_name)} WHERE dimension = ?"
    )
    params: list = [_breakdown(dimension)]
    if start is not None:
        sql += f' AND "{day}" >= ?'
        params.append(start)
    if end is not None:
        sql += f' AND "{day}" <= ?'
        params.append(end)
    return _query(snap, sql + " ORDER BY day, segment", params)


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def trend_table(
    snap: Snapshot, grain: str, dimension: str, start: date | None, end: date | None
) -> pl.DataFrame:
    """All metric columns of the daily or weekly trends for one breakdown and date range."""
    table_name, day = (
        (t.DAILY_TRENDS, "day") if grain == "daily" else (t.WEEKLY_TRENDS, "week_start")
    )
    sql = f"SELECT * FROM {_contract(table_name)} WHERE dimension = ?"
    params: list = [_breakdown(dimension)]
    if start is not None:
        sql += f' AND "{day}" >= ?'
        params.append(start)
    if end is not None:
        sql += f' AND "{day}" <= ?'
        params.append(end)
    return _query(snap, sql + f' ORDER BY "{day}", dimension_value', params)


@dataclass(frozen=True)
class Kpi:
    metric: str
    label: str
    value: float
    previous: float | None

    @property
    def delta(self) -> float | None:
        if self.previous is None:
            return None
        return self.value - self.previous

    @property
    def delta_pct(self) -> float | None:
        if self.previous in (None, 0):
            return None
        return (self.value - self.previous) / abs(self.previous)


@dataclass(frozen=True)
class KpiPeriod:
    start: date
    end: date
    previous_start: date | None
    kpis: tuple[Kpi, ...]


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def kpis(snap: Snapshot, days: int = 7) -> KpiPeriod | None:
    """Headline figures for the last ``days`` complete days against the ``days`` before.

    Counts are summed over the days (active users are the mean per day); rates are recomputed
    from the summed numerators and denominators, not averaged.
    """
    frame = _query(
        snap,
        "SELECT day, active_users, sessions, converted_sessions, bounced_sessions, page_views, "
        "purchases, revenue, new_users FROM "
        f"{_contract(t.DAILY_TRENDS)} WHERE dimension = 'all' AND is_complete ORDER BY day",
    )
    if frame.is_empty():
        return None
    last = frame["day"].max()
    current_days = frame.filter(pl.col("day") > last - _days(days))
    previous_days = frame.filter(
        (pl.col("day") <= last - _days(days)) & (pl.col("day") > last - _days(2 * days))
    )

    def figures(part: pl.DataFrame) -> dict[str, float]:
        sums = part.select(pl.all().exclude("day").sum()).row(0, named=True)
        sessions = sums["sessions"] or 0
        return {
            "active_users": float(part["active_users"].mean() or 0.0),
            "sessions": float(sessions),
            "conversion_rate": sums["converted_sessions"] / sessions if sessions else 0.0,
            "bounce_rate": sums["bounced_sessions"] / sessions if sessions else 0.0,
            "revenue": float(sums["revenue"] or 0.0),
            "new_users": float(sums["new_users"] or 0.0),
        }

    now = figures(current_days)
    before = figures(previous_days) if previous_days.height == current_days.height else None
    labels = {
        "active_users": "Daily active users",
        "sessions": "Sessions",
        "conversion_rate": "Conversion rate",
        "bounce_rate": "Bounce rate",
        "revenue": "Revenue",
        "new_users": "New users",
    }
    return KpiPeriod(
        start=current_days["day"].min(),
        end=last,
        previous_start=previous_days["day"].min() if before else None,
        kpis=tuple(
            Kpi(m, label, now[m], before[m] if before else None) for m, label in labels.items()
        ),
    )


def _days(n: int) -> timedelta:
    return timedelta(days=n)


# --- funnels, retention, lifecycle ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def funnel(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Sessions reaching each step over a period, with step conversion and drop-off recomputed.

    Columns: step_order, step, sessions, step_conversion, overall_conversion, drop_off (shares).
    """
    frame = _query(
        snap,
        "SELECT step_index AS step_order, step, sum(sessions)::BIGINT AS sessions "
        f"FROM {_contract(t.FUNNEL_DAILY)} "
        "WHERE (? IS NULL OR day >= ?) AND (? IS NULL OR day <= ?) "
        "GROUP BY ALL ORDER BY step_order",
        [start, start, end, end],
    )
    return _with_step_rates(frame)


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def funnel_by_segment(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Per segment: sessions at each step over the period and the overall conversion."""
    frame = _query(
        snap,
        "SELECT segment_name AS segment, step_index AS step_order, step, "
        "sum(sessions)::BIGINT AS sessions "
        f"FROM {_contract(t.FUNNEL_SEGMENTS)} "
        "WHERE (? IS NULL OR day >= ?) AND (? IS NULL OR day <= ?) "
        "GROUP BY ALL ORDER BY segment, step_order",
        [start, start, end, end],
    )
    if frame.is_empty():
        return frame
    wide = frame.pivot(on="step", index="segment", values="sessions", aggregate_function="sum")
    first = frame.filter(pl.col("step_order") == 1).select("segment", entered="sessions")
    last_step = frame["step_order"].max()
    final = frame.filter(pl.col("step_order") == last_step).select("segment", completed="sessions")
    return (
        wide.join(first, on="segment", how="left")
        .join(final, on="segment", how="left")
        .with_columns(
            overall_conversion=pl.when(pl.col("entered") > 0)
            .then(pl.col("completed") / pl.col("entered"))
            .otherwise(0.0)
        )
        .drop("entered", "completed")
        .sort(pl.col("segment") != "All users", "overall_conversion", descending=[False, True])
    )


def _with_step_rates(frame: pl.DataFrame) -> pl.DataFrame:
    previous = pl.col("sessions").shift(1)
    return frame.with_columns(
        step_conversion=pl.when(previous.is_null())
        .then(1.0)
        .when(previous > 0)
        .then(pl.col("sessions") / previous)
        .otherwise(0.0),
        overall_conversion=pl.when(pl.col("sessions").first() > 0)
        .then(pl.col("sessions") / pl.col("sessions").first())
        .otherwise(0.0),
    ).with_columns(drop_off=1.0 - pl.col("step_conversion"))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def retention(snap: Snapshot) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT cohort_week, weeks_since, cohort_size AS cohort_users, active_users, "
        "retention_rate AS retention, is_complete "
        f"FROM {_contract(t.RETENTION_COHORTS)} ORDER BY cohort_week, weeks_since",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def lifecycle(snap: Snapshot) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT week_start, state, users, signed_users, quick_ratio, is_complete "
        f"FROM {_contract(t.LIFECYCLE_WEEKLY)} ORDER BY week_start, state",
    )


# --- segments ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def segment_profiles(snap: Snapshot) -> pl.DataFrame:
    return _query(
        snap,
        f"SELECT * EXCLUDE (centroid_json) FROM {_contract(t.SEGMENT_PROFILES)} "
        "ORDER BY users DESC",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def segment_trend(snap: Snapshot, metric: str) -> pl.DataFrame:
    """``day``, ``segment`` (name), ``value`` of one metric per segment (without 'all')."""
    column = _metric(metric)
    return _query(
        snap,
        f'SELECT day, segment_name AS segment, "{column}" AS value, is_complete '
        f"FROM {_contract(t.SEGMENT_TRENDS)} WHERE segment_id <> 'all' ORDER BY day, segment",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def user_map(snap: Snapshot, sample: int = MAP_SAMPLE, seed: int = 7) -> pl.DataFrame:
    """A sample of users projected on the first two principal components of their features.

    Features are log1p-transformed and standardised (as the clustering does), so the map shows
    the same geometry the segments were found in. Columns: user_id, x, y, segment.
    """
    frame = _query(
        snap,
        f"SELECT f.*, s.segment_name AS segment FROM {_contract(t.USER_FEATURES)} f "
        f"JOIN {_contract(t.USER_SEGMENTS)} s USING (user_id) "
        "ORDER BY hash(f.user_id || ?::VARCHAR) LIMIT ?",
        [str(seed), sample],
    )
    columns = [c for c in MAP_FEATURES if c in frame.columns]
    if frame.height < 3 or len(columns) < 2:
        return pl.DataFrame(
            schema={"user_id": pl.String, "x": pl.Float64, "y": pl.Float64, "segment": pl.String}
        )
    values = frame.select(
        pl.col(columns).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).clip(lower_bound=0.0)
    ).to_numpy()
    values = np.log1p(values)
    spread = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    _, _, components = np.linalg.svd(values, full_matrices=False)
    projected = values @ components[:2].T
    return pl.DataFrame(
        {
            "user_id": frame["user_id"],
            "x": projected[:, 0],
            "y": projected[:, 1] if projected.shape[1] > 1 else np.zeros(frame.height),
            "segment": frame["segment"].fill_null("unassigned"),
        }
    )


# --- predictions ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def prediction_list(snap: Snapshot, kind: str, limit: int = 100) -> pl.DataFrame:
    """The high-value (``kind='high_value'``) or at-risk list with reasons and segment names."""
    if kind == "high_value":
        where, order = "TRUE", "p.conversion_rank"
    elif kind == "at_risk":
        where, order = "p.at_risk", "p.at_risk_rank"
    else:
        raise ValueError(f"unknown list {kind!r}: use 'high_value' or 'at_risk'")
    segment = "s.segment_name AS segment, " if snap_has(snap, t.USER_SEGMENTS) else ""
    join = f"LEFT JOIN {_contract(t.USER_SEGMENTS)} s USING (user_id) " if segment else ""
    return _query(
        snap,
        f"SELECT p.user_id, {segment}p.conversion_probability, p.conversion_rank, "
        "p.at_risk_probability, p.at_risk, p.at_risk_rank, "
        "concat_ws('; ', p.reason_1, p.reason_2, p.reason_3) AS reasons, "
        "p.conversion_model, p.bounce_model, p.model_version "
        f"FROM {_contract(t.USER_PREDICTIONS)} p {join}WHERE {where} ORDER BY {order} LIMIT ?",
        [limit],
    )


def snap_has(snap: Snapshot, *tables: str) -> bool:
    return snapshot_info(snap).has(*tables)


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def model_metrics(snap: Snapshot) -> pl.DataFrame:
    return _query(
        snap,
        f"SELECT * FROM {_contract(t.MODEL_METRICS)} ORDER BY task, is_best DESC, pr_auc DESC",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def model_curves(snap: Snapshot, task: str, curve: str) -> pl.DataFrame:
    return _query(
        snap,
        f"SELECT model, point, x, y, threshold FROM {_contract(t.MODEL_CURVES)} "
        "WHERE task = ? AND curve = ? ORDER BY model, point",
        [task, curve],
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def model_cards(snap: Snapshot, task: str) -> pl.DataFrame:
    return _query(
        snap,
        f"SELECT * FROM {_contract(t.MODEL_CARDS)} WHERE task = ? ORDER BY is_best DESC, model",
        [task],
    )


# --- anomalies ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def anomaly_scopes(snap: Snapshot) -> pl.DataFrame:
    """The (dimension, dimension_value, metric) series present in anomaly_history."""
    return _query(
        snap,
        "SELECT dimension, dimension_value, metric, count(*) FILTER (is_anomaly) AS flagged "
        f"FROM {_contract(t.ANOMALY_HISTORY)} GROUP BY dimension, dimension_value, metric "
        "ORDER BY dimension <> 'all', dimension, dimension_value, metric",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def anomaly_series(snap: Snapshot, dimension: str, value: str, metric: str) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT day, value, expected, lower, upper, is_anomaly, direction, score, severity, "
        "seasonal_flag, level_flag, has_baseline "
        f"FROM {_contract(t.ANOMALY_HISTORY)} "
        "WHERE dimension = ? AND dimension_value = ? AND metric = ? ORDER BY day",
        [dimension, value, metric],
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def latest_anomalies(snap: Snapshot) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT day, dimension, dimension_value, metric, value, expected, lower, upper, "
        f"direction, severity, score FROM {_contract(t.ANOMALIES)} ORDER BY abs(score) DESC",
    )


# --- recommendations ---


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def sample_user_ids(snap: Snapshot, limit: int = 200) -> list[str]:
    """Users worth looking up first: those with personalised (hybrid) recommendations."""
    frame = _query(
        snap,
        f"SELECT user_id FROM {_contract(t.USER_RECOMMENDATIONS)} "
        "GROUP BY user_id ORDER BY count(*) FILTER (source = 'hybrid') DESC, user_id LIMIT ?",
        [limit],
    )
    return frame["user_id"].to_list()


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def user_profile(snap: Snapshot, user_id: str) -> dict | None:
    """The users row, with the segment and predictions when those tables exist."""
    info = snapshot_info(snap)
    if not info.has(t.USERS):
        return None
    columns, joins = ["u.*"], []
    if info.has(t.USER_SEGMENTS):
        columns.append("s.segment_name")
        joins.append(f"LEFT JOIN {_contract(t.USER_SEGMENTS)} s USING (user_id)")
    if info.has(t.USER_PREDICTIONS):
        columns += ["p.conversion_probability", "p.at_risk_probability"]
        joins.append(f"LEFT JOIN {_contract(t.USER_PREDICTIONS)} p USING (user_id)")
    frame = _query(
        snap,
        f"SELECT {', '.join(columns)} FROM {_contract(t.USERS)} u {' '.join(joins)} "
        "WHERE u.user_id = ?",
        [user_id],
    )
    return frame.row(0, named=True) if frame.height else None


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def user_recommendations(snap: Snapshot, user_id: str) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT rank, page_id, title, source, top_signal, reason, score "
        f"FROM {_contract(t.USER_RECOMMENDATIONS)} WHERE user_id = ? ORDER BY rank",
        [user_id],
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def user_history(snap: Snapshot, user_id: str, limit: int = 15) -> pl.DataFrame:
    """The user's most recent page views with titles (what the recommendations build on)."""
    try:
        with SnapshotReader(snap) as reader:
            return reader.recent_activity(user_id, limit)
    except FileNotFoundError as err:
        raise SnapshotChanged(str(err)) from err


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def page_choices(snap: Snapshot) -> pl.DataFrame:
    """page_id and a display label, for pages that have neighbours."""
    return _query(
        snap,
        "SELECT DISTINCT s.page_id, p.title, p.category FROM "
        f"{_contract(t.SIMILAR_PAGES)} s JOIN {_contract(t.PAGES)} p USING (page_id) "
        "ORDER BY p.category, p.title",
    )


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def similar_pages(snap: Snapshot, page_id: str) -> pl.DataFrame:
    return _query(
        snap,
        "SELECT s.rank, s.similar_page_id, s.similar_title, p.category, s.similarity, "
        f"s.same_category FROM {_contract(t.SIMILAR_PAGES)} s "
        f"LEFT JOIN {_contract(t.PAGES)} p ON p.page_id = s.similar_page_id "
        "WHERE s.page_id = ? ORDER BY s.rank",
        [page_id],
    )


REC_METRICS: dict[str, str] = {
    "hr_at_k": "Hit rate@k",
    "ndcg_at_k": "NDCG@k",
    "recall_at_k": "Recall@k",
    "map_at_k": "MAP@k",
    "coverage": "Coverage",
    "novelty": "Novelty",
}


def evaluation_long(evaluation: pl.DataFrame) -> pl.DataFrame:
    """rec_evaluation in long form (method, kind, metric, value) for the comparison chart."""
    present = [m for m in REC_METRICS if m in evaluation.columns]
    return (
        evaluation.with_columns(
            kind=pl.when(pl.col("is_baseline")).then(pl.lit("baseline")).otherwise(pl.lit("model"))
        )
        .unpivot(index=["method", "kind"], on=present, variable_name="metric", value_name="value")
        .with_columns(pl.col("metric").replace_strict(REC_METRICS, default=pl.col("metric")))
    )


# --- pipeline ---


def freshness(materialized_at: datetime | None, now: datetime | None = None) -> str:
    """How long ago the snapshot was published, in words (``now`` is naive UTC)."""
    if materialized_at is None:
        return "unknown"
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = max((now - materialized_at).total_seconds(), 0.0)
    if seconds < 90:
        return "just now"
    minutes = seconds / 60
    if minutes < 90:
        return f"{math.floor(minutes)} minutes ago"
    hours = minutes / 60
    if hours < 36:
        return f"{hours:.1f} hours ago"
    return f"{hours / 24:.0f} days ago"
