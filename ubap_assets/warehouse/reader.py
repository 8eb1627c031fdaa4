"""The read-only door to the serving data, shared by the API and the dashboard.

Dagster-free. A ``SnapshotReader`` is bound to ONE immutable serving snapshot (resolved once
from the ``CURRENT`` pointer), so everything read through it comes from the same file even when
a refresh publishes a new snapshot meanwhile. Connections are opened ``read_only`` once per
snapshot file and shared; each reader takes its own cursor. Every value from outside is bound
as a ``?`` parameter; table and column names come only from this module.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.paths import snapshot_dir as default_snapshot_dir
from ubap_assets.warehouse.snapshots import NoSnapshotError, Snapshot, current_snapshot

__all__ = [
    "MissingTableError",
    "NoSnapshotError",
    "SnapshotMeta",
    "SnapshotReader",
    "open_reader",
]

_MAX_OPEN_SNAPSHOTS = 4  # connections kept open (the current one plus a few just replaced)
_MAX_CACHED_RESULTS = 4096  # helper results memoized per snapshot


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
    """One read-only connection to one snapshot file, plus its result cache."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.connection = duckdb.connect(str(snapshot.path), read_only=True)
        names = self.connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        self.tables = frozenset(n for (n,) in names)
        self.users = 0  # readers currently holding a cursor
        self.retired = False
        self.results: OrderedDict[tuple, Any] = OrderedDict()
        self.results_lock = threading.Lock()

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        with self.results_lock:
            if key in self.results:
                self.results.move_to_end(key)
                return self.results[key]
        value = compute()
        with self.results_lock:
            self.results[key] = value
            if len(self.results) > _MAX_CACHED_RESULTS:
                self.results.popitem(last=False)
        return value


class _ConnectionCache:
    """Snapshot files are immutable: open each once, share it, close it when it goes stale."""

    def __init__(self, max_open: int = _MAX_OPEN_SNAPSHOTS):
        self._lock = threading.Lock()
        self._open: OrderedDict[tuple[str, int], _OpenSnapshot] = OrderedDict()
        self._max_open = max_open

    def acquire(self, snapshot: Snapshot) -> _OpenSnapshot:
        key = (str(snapshot.path), snapshot.path.stat().st_ino)
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
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

F = TypeVar("F", bound=Callable[..., Any])


def _memoized(method: F) -> F:
    """Cache a helper's result per (snapshot, helper, arguments); snapshots never change."""

    @wraps(method)
    def wrapper(self: "SnapshotReader", *args: Any, **kwargs: Any) -> Any:
        key = (method.__name__, args, tuple(sorted(kwargs.items())))
        return self._entry.cached(key, lambda: method(self, *args, **kwargs))

    return wrapper  # type: ignore[return-value]


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

    def has_table(self, table: str) -> bool:
        return table in self._entry.tables

    def require(self, *tables: str) -> None:
        """Raise MissingTableError for the first of ``tables`` this snapshot lacks."""
        for table in tables:
            if table not in self._entry.tables:
                raise MissingTableError(table, self.snapshot_id)

    def _cur(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise RuntimeError("this SnapshotReader is closed; open a new one with open_reader()")
        if self._cursor is None:
            self._cursor = self._entry.connection.cursor()
        return self._cursor

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run read-only SQL with ``?`` parameters and return a polars frame."""
        cur = self._cur().execute(sql, list(params or []))
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if not rows:
            return cur.execute(f"SELECT * FROM ({sql}) LIMIT 0", list(params or [])).pl()
        return pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run SQL and return plain dict rows (fast path for small results)."""
        cur = self._cur().execute(sql, list(params or []))
        columns = [d[0] for d in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self._cur().execute(sql, list(params or [])).fetchone()
        return None if row is None else row[0]

    def paged(
        self, sql: str, params: Sequence[Any] | None, limit: int, offset: int
    ) -> tuple[pl.DataFrame, int]:
        """One page of ``sql`` (which must have its ORDER BY) and the total row count."""
        return self._entry.cached(
            ("paged", sql, tuple(params or ()), limit, offset),
            lambda: (
                self.query(f"{sql} LIMIT ? OFFSET ?", [*(params or []), limit, offset]),
                int(self.scalar(f"SELECT count(*) FROM ({sql})", params)),
            ),
        )

    # --- snapshot metadata ---
    @_memoized
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

    @_memoized
    def check_results(self) -> pl.DataFrame:
        self.require(t.CHECK_RESULTS)
        return self.query(f"SELECT * FROM {t.CHECK_RESULTS} ORDER BY asset_key, check_name")

    # --- foundation tables ---
    @_memoized
    def user(self, user_id: str) -> dict[str, Any] | None:
        self.require(t.USERS)
        found = self.rows(f"SELECT * FROM {t.USERS} WHERE user_id = ?", [user_id])
        return found[0] if found else None

    @_memoized
    def page(self, page_id: str) -> dict[str, Any] | None:
        self.require(t.PAGES)
        found = self.rows(f"SELECT * FROM {t.PAGES} WHERE page_id = ?", [page_id])
        return found[0] if found else None

    @_memoized
    def pages(self) -> pl.DataFrame:
        self.require(t.PAGES)
        return self.query(f"SELECT * FROM {t.PAGES} ORDER BY page_id")

    @_memoized
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

    @_memoized
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


def open_reader(snapshot_dir: Path | None = None) -> SnapshotReader:
    """A reader bound to the snapshot CURRENT names now (raises NoSnapshotError if none)."""
    return SnapshotReader(current_snapshot(snapshot_dir or default_snapshot_dir()))


def close_idle_connections() -> None:
    """Close cached connections no reader is using (the next reader reopens what it needs)."""
    _CONNECTIONS.clear()
