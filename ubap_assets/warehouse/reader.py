"""The read-only door to the serving data, shared by the API and the dashboard.

Dagster-free. A ``SnapshotReader`` is bound to ONE immutable serving snapshot (resolved once
from the ``CURRENT`` pointer), so everything read through it comes from the same file even when
a refresh publishes a new snapshot meanwhile. Connections are opened ``read_only`` once per
snapshot file and shared; each reader takes its own cursor. Every value from outside is bound
as a ``?`` parameter; table and column names come only from this module.

No result is cached here, so memory depends on the snapshot, never on the arguments callers
send: per-user and per-page lookups are slices of per-snapshot in-memory indexes
(microseconds), everything else is a DuckDB query (milliseconds; long lists are paged in SQL).
Memoizing frames was measured to cost far more than it saves: a small polars frame from DuckDB
holds ~30x its ``estimated_size()``. Repeated requests are served by the API's response cache.
A pointer or snapshot file that cannot be read raises ``UnreadableSnapshotError`` (a
``NoSnapshotError``) whose message names the problem and the fix.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.paths import snapshot_dir as default_snapshot_dir
from ubap_assets.warehouse.snapshots import (
    CURRENT_POINTER,
    NoSnapshotError,
    Snapshot,
    current_snapshot,
    read_table_status,
)

__all__ = [
    "MissingTableError",
    "NoSnapshotError",
    "SnapshotMeta",
    "SnapshotReader",
    "UnreadableSnapshotError",
    "open_reader",
    "resolve_snapshot",
]

_MAX_OPEN_SNAPSHOTS = 4  # connections kept open (the current one plus a few just replaced)
_REPUBLISH = "publish a new snapshot (materialize the `serving_snapshot` asset, or run `make up`)"


class UnreadableSnapshotError(NoSnapshotError):
    """The CURRENT pointer or the snapshot file it names exists but cannot be read."""


def resolve_snapshot(snapshot_dir: Path) -> Snapshot:
    """The snapshot CURRENT names now.

    Raises NoSnapshotError before the first publication and UnreadableSnapshotError when the
    folder, the pointer or the file it names is broken, each with a message naming the fix.
    """
    pointer = snapshot_dir / CURRENT_POINTER
    if snapshot_dir.exists() and not snapshot_dir.is_dir():
        raise UnreadableSnapshotError(
            f"the snapshot folder {snapshot_dir} is a file, not a folder: set UBAP_SNAPSHOT_DIR "
            f"to a folder (or move the file away), then {_REPUBLISH}"
        )
    try:
        return current_snapshot(snapshot_dir)
    except UnicodeDecodeError:
        raise UnreadableSnapshotError(
            f"the snapshot pointer {pointer} is corrupt (not text): {_REPUBLISH}; it rewrites "
            "the pointer"
        ) from None
    except OSError as exc:  # a directory named CURRENT, no permission, an I/O error
        raise UnreadableSnapshotError(
            f"the snapshot pointer {pointer} cannot be read ({exc.strerror or exc}): fix its "
            f"permissions or remove it, then {_REPUBLISH}"
        ) from None
    except UnreadableSnapshotError:
        raise
    except NoSnapshotError as exc:
        if not pointer.exists():
            raise  # nothing published yet: the message says which command publishes
        raise UnreadableSnapshotError(f"{exc}: {_REPUBLISH}; it rewrites the pointer") from None


def _unreadable(snapshot: Snapshot, exc: Exception) -> UnreadableSnapshotError:
    first_line = str(exc).strip().splitlines()[-1 if "Corrupt" in str(exc) else 0]
    return UnreadableSnapshotError(
        f"snapshot file {snapshot.path} cannot be read ({first_line}): it is damaged or not a "
        f"DuckDB file; {_REPUBLISH}"
    )


@contextmanager
def _reading(snapshot: Snapshot) -> Iterator[None]:
    """DuckDB I/O errors while reading (a damaged block) become UnreadableSnapshotError."""
    try:
        yield
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) or "IO Error" in str(exc):
            raise _unreadable(snapshot, exc) from exc
        raise


class MissingTableError(LookupError):
    """The snapshot does not contain a table a helper needs."""

    def __init__(self, table: str, snapshot_id: str):
        self.table = table
        self.snapshot_id = snapshot_id
        super().__init__(
            f"table '{table}' is not in snapshot {snapshot_id}: materialize the asset "
            f"'{table}' and then 'serving_snapshot' (or run `make up`) to publish it"
        )


@dataclass(frozen=True)
class SnapshotMeta:
    snapshot_id: str
    run_id: str | None
    materialized_at: datetime | None
    data_start: date | None
    data_end: date | None
    tables: tuple[str, ...]
    missing_tables: tuple[str, ...]


class _OpenSnapshot:
    """One read-only connection to one snapshot file, its table list and lookup indexes."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        try:
            self.connection = duckdb.connect(str(snapshot.path), read_only=True)
        except duckdb.Error as exc:
            raise _unreadable(snapshot, exc) from None
        try:
            names = self.connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
            self.tables = frozenset(n for (n,) in names)
            self.not_refreshed = read_table_status(self.connection)  # {} if all fresh
        except duckdb.Error as exc:
            self.connection.close()
            raise _unreadable(snapshot, exc) from None
        self.users = 0  # readers currently holding a cursor
        self.retired = False
        self.indexes: dict[str, _KeyedTable] = {}
        self.index_lock = threading.Lock()

    def keyed(self, table: str, key: str, order: tuple[str, ...] = ()) -> "_KeyedTable":
        """``table`` in memory, sorted by ``key``: point lookups in microseconds, built once."""
        with self.index_lock:
            index = self.indexes.get(table)
            if index is None:
                cur = self.connection.cursor()
                try:
                    with _reading(self.snapshot):
                        frame = cur.execute(f'SELECT * FROM "{table}"').pl()
                finally:
                    cur.close()
                # publish_snapshot stores these tables clustered on (key, order): sort only if not.
                if not _sorted_by(frame, (key, *order)):
                    frame = frame.sort(key, *order)
                index = _KeyedTable(frame, key)
                self.indexes[table] = index
            return index


def _sorted_by(frame: pl.DataFrame, columns: tuple[str, ...]) -> bool:
    """Whether rows ascend lexicographically on ``columns`` (each row >= the one before)."""
    if frame.height < 2:
        return True
    expr = pl.col(columns[-1]) >= pl.col(columns[-1]).shift(1)
    for name in reversed(columns[:-1]):
        col, prev = pl.col(name), pl.col(name).shift(1)
        expr = (col > prev) | ((col == prev) & expr)
    return bool(frame.select(expr.slice(1).fill_null(True).all()).item())


class _KeyedTable:
    """A frame sorted by one key column, with each key's row range in a dict: O(1) lookups."""

    def __init__(self, frame: pl.DataFrame, key: str):
        self.frame = frame
        ranges = (
            frame.select(pl.col(key).fill_null(""))
            .with_row_index("start")
            .group_by(key, maintain_order=True)
            .agg(pl.col("start").first(), pl.len().alias("rows"))
        )
        self.ranges: dict[str, tuple[int, int]] = dict(
            zip(
                ranges[key].to_list(),
                zip(ranges["start"].to_list(), ranges["rows"].to_list(), strict=True),
                strict=True,
            )
        )

    def rows(self, value: str) -> pl.DataFrame:
        start, length = self.ranges.get(value, (0, 0))
        return self.frame.slice(start, length)


class _ConnectionCache:
    """Snapshot files are immutable: open each once, share it, close it when it goes stale."""

    def __init__(self, max_open: int = _MAX_OPEN_SNAPSHOTS):
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _OpenSnapshot] = OrderedDict()
        self._max_open = max_open

    def acquire(self, snapshot: Snapshot) -> _OpenSnapshot:
        # Snapshot files are never rewritten under the same name (publish refuses), so the path
        # is the identity; no stat per request.
        key = str(snapshot.path)
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                if not snapshot.path.exists():
                    raise FileNotFoundError(
                        f"snapshot file {snapshot.path} is gone (pruned after newer snapshots "
                        "went live): open a new reader with open_reader()"
                    )
                entry = _OpenSnapshot(snapshot)
                self._open[key] = entry
            self._open.move_to_end(key)
            entry.users += 1
            while len(self._open) > self._max_open:
                _, old = self._open.popitem(last=False)
                old.retired = True
                if old.users == 0:
                    old.connection.close()
            return entry

    def release(self, entry: _OpenSnapshot) -> None:
        with self._lock:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                entry.connection.close()

    def clear(self) -> None:
        """Close every idle connection (tests; a process about to delete snapshot files)."""
        with self._lock:
            for key, entry in list(self._open.items()):
                entry.retired = True
                if entry.users == 0:
                    entry.connection.close()
                del self._open[key]


_CONNECTIONS = _ConnectionCache()


def _range(column: str, start: date | None, end: date | None) -> tuple[str, list[Any]]:
    """An inclusive date-range WHERE fragment on a trusted column name, with its parameters."""
    clauses, params = ["TRUE"], []
    if start is not None:
        clauses.append(f'"{column}" >= ?')
        params.append(start)
    if end is not None:
        clauses.append(f'"{column}" <= ?')
        params.append(end)
    return " AND ".join(clauses), params


class SnapshotReader:
    """Read-only access to one serving snapshot. Use one per request; close it afterwards."""

    def __init__(self, snapshot: Snapshot):
        self._entry = _CONNECTIONS.acquire(snapshot)
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        self.snapshot_id = snapshot.snapshot_id
        self.path = snapshot.path
        self._snapshot = snapshot
        self.tables_read: set[str] = set()  # tables the helpers called so far read from

    # --- lifecycle ---
    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        _CONNECTIONS.release(self._entry)

    # --- generic access ---
    @property
    def tables(self) -> frozenset[str]:
        return self._entry.tables

    @property
    def not_refreshed(self) -> dict[str, str]:
        """{table: reason} for the tables the publishing run could not refresh ({} if none)."""
        return self._entry.not_refreshed

    def not_refreshed_read(self) -> dict[str, str]:
        """``not_refreshed`` restricted to the tables this reader's helpers have read."""
        stale = self._entry.not_refreshed
        return {name: stale[name] for name in sorted(self.tables_read) if name in stale}

    def has_table(self, table: str) -> bool:
        """Whether the snapshot has ``table`` (helpers that then read it count it as read)."""
        if table in self._entry.tables:
            self.tables_read.add(table)
            return True
        return False

    def require(self, *tables: str) -> None:
        """Raise MissingTableError for the first of ``tables`` this snapshot lacks."""
        for table in tables:
            if not self.has_table(table):
                raise MissingTableError(table, self.snapshot_id)

    def _cur(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise RuntimeError("this SnapshotReader is closed; open a new one with open_reader()")
        if self._cursor is None:
            self._cursor = self._entry.connection.cursor()
        return self._cursor

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run read-only SQL with ``?`` parameters and return a polars frame (exact types)."""
        with _reading(self._snapshot):
            return self._cur().execute(sql, list(params or [])).pl()

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run SQL and return plain dict rows (fast path for small results)."""
        with _reading(self._snapshot):
            cur = self._cur().execute(sql, list(params or []))
            columns = [d[0] for d in cur.description]
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with _reading(self._snapshot):
            row = self._cur().execute(sql, list(params or [])).fetchone()
        return None if row is None else row[0]

    def _keyed(self, table: str, key: str, order: tuple[str, ...] = ()) -> "_KeyedTable":
        self.tables_read.add(table)
        return self._entry.keyed(table, key, order)

    # --- snapshot metadata ---
    def meta(self) -> SnapshotMeta:
        present = tuple(sorted(n for n in self._entry.tables))
        row: dict[str, Any] = {}
        if self.has_table(t.SNAPSHOT_META):
            found = self.rows(f"SELECT * FROM {t.SNAPSHOT_META} LIMIT 1")
            row = found[0] if found else {}
        missing = row.get("missing_tables") or ""
        return SnapshotMeta(
            snapshot_id=self.snapshot_id,
            run_id=row.get("run_id"),
            materialized_at=row.get("materialized_at")
            or datetime.fromtimestamp(self.path.stat().st_mtime).replace(microsecond=0),
            data_start=row.get("data_start"),
            data_end=row.get("data_end"),
            tables=present,
            missing_tables=tuple(m for m in missing.split(",") if m),
        )

    def check_results(self) -> pl.DataFrame:
        self.require(t.CHECK_RESULTS)
        return self.query(f"SELECT * FROM {t.CHECK_RESULTS} ORDER BY asset_key, check_name")

    # --- foundation tables ---
    def user(self, user_id: str) -> dict[str, Any] | None:
        self.require(t.USERS)
        found = self._keyed(t.USERS, "user_id").rows(user_id).to_dicts()
        return found[0] if found else None

    def page(self, page_id: str) -> dict[str, Any] | None:
        self.require(t.PAGES)
        found = self._keyed(t.PAGES, "page_id").rows(page_id).to_dicts()
        return found[0] if found else None

    def pages(self) -> pl.DataFrame:
        self.require(t.PAGES)
        return self.query(f"SELECT * FROM {t.PAGES} ORDER BY page_id")

    def recent_activity(self, user_id: str, limit: int = 20) -> pl.DataFrame:
        """The user's latest events, newest first, with the page title."""
        self.require(t.EVENTS)
        title = "p.title" if self.has_table(t.PAGES) else "NULL::VARCHAR"
        join = f"LEFT JOIN {t.PAGES} p USING (page_id)" if self.has_table(t.PAGES) else ""
        return self.query(
            f"SELECT e.event_ts, e.event_type, e.page_id, {title} AS page_title, e.session_id, "
            f"e.device, e.revenue FROM {t.EVENTS} e {join} WHERE e.user_id = ? "
            "ORDER BY e.event_ts DESC, e.event_id DESC LIMIT ?",
            [user_id, limit],
        )

    def events_per_day(self, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        """day, events, users, sessions, purchases, revenue straight from the events."""
        self.require(t.EVENTS)
        where, params = _range("day", start, end)
        return self.query(
            "SELECT * FROM (SELECT CAST(event_ts AS DATE) AS day, count(*) AS events, "
            "count(DISTINCT user_id) AS users, count(DISTINCT session_id) AS sessions, "
            "count(*) FILTER (event_type = 'purchase') AS purchases, "
            f"coalesce(sum(revenue), 0) AS revenue FROM {t.EVENTS} GROUP BY 1) "
            f"WHERE {where} ORDER BY day",
            params,
        )

    # --- trends ---
    def daily_trends(
        self,
        start: date | None = None,
        end: date | None = None,
        dimension: str = "all",
        dimension_value: str | None = None,
    ) -> pl.DataFrame:
        """daily_trends rows of one dimension (all/device/traffic_source), oldest first."""
        return self._trends(t.DAILY_TRENDS, "day", start, end, dimension, dimension_value)

    def weekly_trends(
        self,
        start: date | None = None,
        end: date | None = None,
        dimension: str = "all",
        dimension_value: str | None = None,
    ) -> pl.DataFrame:
        """weekly_trends rows (week_start in [start, end]) of one dimension, oldest first."""
        return self._trends(t.WEEKLY_TRENDS, "week_start", start, end, dimension, dimension_value)

    def _trends(
        self,
        table: str,
        period: str,
        start: date | None,
        end: date | None,
        dimension: str,
        dimension_value: str | None,
    ) -> pl.DataFrame:
        self.require(table)
        where, params = _range(period, start, end)
        where += " AND dimension = ?"
        params.append(dimension)
        if dimension_value is not None:
            where += " AND dimension_value = ?"
            params.append(dimension_value)
        return self.query(
            f"SELECT * FROM {table} WHERE {where} ORDER BY {period}, dimension_value", params
        )

    def segment_trends(
        self, start: date | None = None, end: date | None = None, segment_id: str | None = None
    ) -> pl.DataFrame:
        """segment_trends rows (segment 'all' included), by day then segment."""
        self.require(t.SEGMENT_TRENDS)
        where, params = _range("day", start, end)
        if segment_id is not None:
            where += " AND segment_id = ?"
            params.append(segment_id)
        return self.query(
            f"SELECT * FROM {t.SEGMENT_TRENDS} WHERE {where} ORDER BY day, segment_id", params
        )

    # --- segments and predictions ---
    def segment_profiles(self) -> pl.DataFrame:
        """segment_profiles, largest segment first."""
        self.require(t.SEGMENT_PROFILES)
        return self.query(f"SELECT * FROM {t.SEGMENT_PROFILES} ORDER BY users DESC, segment_id")

    def user_segment(self, user_id: str) -> dict[str, Any] | None:
        """The user's user_segments row (None if unsegmented or the table is absent)."""
        if not self.has_table(t.USER_SEGMENTS):
            return None
        found = self._keyed(t.USER_SEGMENTS, "user_id").rows(user_id).to_dicts()
        return found[0] if found else None

    def user_prediction(self, user_id: str) -> dict[str, Any] | None:
        """The user's user_predictions row (None if not scored or the table is absent)."""
        if not self.has_table(t.USER_PREDICTIONS):
            return None
        found = self._keyed(t.USER_PREDICTIONS, "user_id").rows(user_id).to_dicts()
        return found[0] if found else None

    def _predictions_with_segment(self) -> str:
        if self.has_table(t.USER_SEGMENTS):
            return (
                f"SELECT p.*, CAST(s.segment_id AS VARCHAR) AS segment_id, s.segment_name "
                f"FROM {t.USER_PREDICTIONS} p LEFT JOIN {t.USER_SEGMENTS} s USING (user_id)"
            )
        return (
            "SELECT p.*, NULL::VARCHAR AS segment_id, NULL::VARCHAR AS segment_name "
            f"FROM {t.USER_PREDICTIONS} p"
        )

    def high_value_users(
        self, min_probability: float = 0.0, limit: int = 100, offset: int = 0
    ) -> tuple[pl.DataFrame, int]:
        """One page of user_predictions (+ segment) by conversion_rank, probability >=
        min_probability, and how many users match in all."""
        return self._scored_page(
            "conversion_probability >= ?", [min_probability], "conversion_rank", limit, offset
        )

    def at_risk_users(
        self, min_probability: float | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[pl.DataFrame, int]:
        """One page of users flagged at_risk (or at_risk_probability >= min_probability),
        riskiest first, and how many users match in all."""
        where, params = "at_risk", []
        if min_probability is not None:
            where, params = "at_risk_probability >= ?", [min_probability]
        return self._scored_page(where, params, "at_risk_rank", limit, offset)

    def _scored_page(
        self, where: str, params: list[Any], rank: str, limit: int, offset: int
    ) -> tuple[pl.DataFrame, int]:
        # Paged in SQL: a request materializes one page, not every scored user.
        self.require(t.USER_PREDICTIONS)
        total = self.scalar(f"SELECT count(*) FROM {t.USER_PREDICTIONS} WHERE {where}", params)
        page = self.query(
            f"SELECT * FROM ({self._predictions_with_segment()}) WHERE {where} "
            f"ORDER BY {rank}, user_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return page, int(total)

    def segment_predictions(self) -> pl.DataFrame:
        """Per segment: users, mean conversion and at-risk probability, at-risk users/share."""
        self.require(t.USER_PREDICTIONS, t.USER_SEGMENTS)
        return self.query(
            "SELECT CAST(s.segment_id AS VARCHAR) AS segment_id, any_value(s.segment_name) "
            "AS segment_name, count(*) AS users, "
            "avg(p.conversion_probability) AS mean_conversion_probability, "
            "avg(p.at_risk_probability) AS mean_at_risk_probability, "
            "count(*) FILTER (p.at_risk) AS at_risk_users, "
            "count(*) FILTER (p.at_risk) / count(*) AS at_risk_share, "
            "sum(p.conversion_probability) AS expected_converters "
            f"FROM {t.USER_PREDICTIONS} p JOIN {t.USER_SEGMENTS} s USING (user_id) "
            "GROUP BY s.segment_id ORDER BY users DESC, segment_id"
        )

    def scoring_models(self) -> dict[str, str]:
        """The models behind user_predictions: {'conversion': name, 'bounce': name}."""
        self.require(t.USER_PREDICTIONS)
        found = self.rows(
            f"SELECT any_value(conversion_model) AS conversion, any_value(bounce_model) AS bounce "
            f"FROM {t.USER_PREDICTIONS}"
        )
        return {k: v for k, v in found[0].items() if v is not None} if found else {}

    def model_metrics(self, task: str | None = None) -> pl.DataFrame:
        """model_metrics rows (optionally one task), best model first within a task."""
        self.require(t.MODEL_METRICS)
        where, params = ("task = ?", [task]) if task else ("TRUE", [])
        return self.query(
            f"SELECT * FROM {t.MODEL_METRICS} WHERE {where} "
            "ORDER BY task, is_best DESC, pr_auc DESC, model",
            params,
        )

    # --- funnels, retention ---
    def funnel_daily(
        self, start: date | None = None, end: date | None = None, segment_id: str | None = None
    ) -> pl.DataFrame:
        """funnel_daily (or funnel_segments rows of one segment), by day then step."""
        where, params = _range("day", start, end)
        if segment_id is None or segment_id == "all":
            table = t.FUNNEL_DAILY
        else:
            table = t.FUNNEL_SEGMENTS
            where += " AND segment_id = ?"
            params.append(segment_id)
        self.require(table)
        return self.query(f"SELECT * FROM {table} WHERE {where} ORDER BY day, step_index", params)

    def funnel_segment_ids(self) -> frozenset[str]:
        """Segment ids present in funnel_segments."""
        self.require(t.FUNNEL_SEGMENTS)
        found = self.rows(f"SELECT DISTINCT segment_id FROM {t.FUNNEL_SEGMENTS}")
        return frozenset(str(r["segment_id"]) for r in found)

    def funnel(
        self, start: date | None = None, end: date | None = None, segment_id: str | None = None
    ) -> pl.DataFrame:
        """The funnel over [start, end]: sessions per step summed over days, rates recomputed."""
        daily = self.funnel_daily(start, end, segment_id)
        steps = (
            daily.group_by("step_index", "step").agg(pl.col("sessions").sum()).sort("step_index")
        )
        sessions = [int(n) for n in steps["sessions"]]
        prev = [None, *sessions[:-1]] if sessions else []
        step_conv = [
            1.0 if p is None else (n / p if p else 0.0) for n, p in zip(sessions, prev, strict=True)
        ]
        return steps.with_columns(
            pl.Series("step_conversion", step_conv, dtype=pl.Float64),
            pl.Series(
                "overall_conversion",
                [n / sessions[0] if sessions[0] else 0.0 for n in sessions],
                dtype=pl.Float64,
            ),
            pl.Series(
                "drop_off",
                [0 if p is None else p - n for n, p in zip(sessions, prev, strict=True)],
                dtype=pl.Int64,
            ),
            pl.Series("drop_off_rate", [1.0 - c for c in step_conv], dtype=pl.Float64),
        )

    def retention_cohorts(self, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        """retention_cohorts with cohort_week in [start, end], by cohort then weeks_since."""
        self.require(t.RETENTION_COHORTS)
        where, params = _range("cohort_week", start, end)
        return self.query(
            f"SELECT * FROM {t.RETENTION_COHORTS} WHERE {where} ORDER BY cohort_week, weeks_since",
            params,
        )

    def lifecycle_weekly(self, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        """lifecycle_weekly with week_start in [start, end]."""
        self.require(t.LIFECYCLE_WEEKLY)
        where, params = _range("week_start", start, end)
        return self.query(
            f"SELECT * FROM {t.LIFECYCLE_WEEKLY} WHERE {where} ORDER BY week_start, state",
            params,
        )

    # --- anomalies, summary ---
    def anomalies_recent(self) -> pl.DataFrame:
        """The anomalies table: flagged points of the latest period, largest |score| first."""
        self.require(t.ANOMALIES)
        return self.query(f"SELECT * FROM {t.ANOMALIES} ORDER BY abs(score) DESC, day DESC, metric")

    def anomaly_history(
        self,
        start: date | None = None,
        end: date | None = None,
        metric: str | None = None,
        dimension: str | None = None,
        flagged_only: bool = True,
    ) -> pl.DataFrame:
        """anomaly_history rows in [start, end] (flagged only by default), newest day first."""
        self.require(t.ANOMALY_HISTORY)
        where, params = _range("day", start, end)
        if flagged_only:
            where += " AND is_anomaly"
        for column, value in (("metric", metric), ("dimension", dimension)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        return self.query(
            f"SELECT * FROM {t.ANOMALY_HISTORY} WHERE {where} "
            "ORDER BY day DESC, abs(score) DESC, dimension, dimension_value, metric",
            params,
        )

    def anomaly_scores(self) -> pl.DataFrame:
        self.require(t.ANOMALY_SCORES)
        return self.query(f"SELECT * FROM {t.ANOMALY_SCORES} ORDER BY detector, kind")

    def summary(self) -> dict[str, Any] | None:
        """The latest summary row (None when the table is empty)."""
        self.require(t.SUMMARY)
        found = self.rows(f"SELECT * FROM {t.SUMMARY} ORDER BY generated_at DESC LIMIT 1")
        return found[0] if found else None

    # --- recommendations ---
    def user_recommendations(self, user_id: str, limit: int = 10) -> pl.DataFrame:
        """The user's recommended pages, best first (empty for an unknown user)."""
        self.require(t.USER_RECOMMENDATIONS)
        index = self._keyed(t.USER_RECOMMENDATIONS, "user_id", ("rank",))
        return index.rows(user_id).head(limit)

    def similar_pages(self, page_id: str, limit: int = 10) -> pl.DataFrame:
        """Pages most similar to page_id, most similar first."""
        self.require(t.SIMILAR_PAGES)
        return self._keyed(t.SIMILAR_PAGES, "page_id", ("rank",)).rows(page_id).head(limit)

    def admin_insights(self, kind: str | None = None, severity: str | None = None) -> pl.DataFrame:
        """admin_insights, high severity first, then by volume."""
        self.require(t.ADMIN_INSIGHTS)
        where, params = "TRUE", []
        for column, value in (("kind", kind), ("severity", severity)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        return self.query(
            f"SELECT * FROM {t.ADMIN_INSIGHTS} WHERE {where} ORDER BY "
            "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, "
            "volume DESC, insight_id",
            params,
        )

    def rec_evaluation(self) -> pl.DataFrame:
        """rec_evaluation, best NDCG@k first."""
        self.require(t.REC_EVALUATION)
        return self.query(f"SELECT * FROM {t.REC_EVALUATION} ORDER BY ndcg_at_k DESC, method")


def open_reader(snapshot_dir: Path | None = None) -> SnapshotReader:
    """A reader bound to the snapshot CURRENT names now.

    Raises NoSnapshotError if none is published, UnreadableSnapshotError if it is broken.
    """
    return SnapshotReader(resolve_snapshot(snapshot_dir or default_snapshot_dir()))


def close_idle_connections() -> None:
    """Close cached connections no reader is using (the next reader reopens what it needs)."""
    _CONNECTIONS.clear()
