"""The read-only door to the serving data, shared by the API and the dashboard.

Dagster-free. A ``SnapshotReader`` is bound to ONE immutable serving snapshot (resolved once
from the ``CURRENT`` pointer), so everything read through it comes from the same file even when
a refresh publishes a new snapshot meanwhile. Connections are opened ``read_only`` once per
snapshot file and shared; each reader takes its own cursor. Every value from outside is bound
as a ``?`` parameter; table and column names come only from the table contract and the query
modules (``ubap_assets.warehouse.queries``, one per area), whose methods the reader inherits.

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
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.paths import snapshot_dir as default_snapshot_dir
from ubap_assets.warehouse.queries.anomalies import AnomalyQueries
from ubap_assets.warehouse.queries.funnels import FunnelQueries
from ubap_assets.warehouse.queries.meta import MetaQueries, SnapshotMeta
from ubap_assets.warehouse.queries.predictions import PredictionQueries
from ubap_assets.warehouse.queries.recommendations import RecommendationQueries
from ubap_assets.warehouse.queries.segments import SegmentQueries
from ubap_assets.warehouse.queries.trends import TrendQueries
from ubap_assets.warehouse.queries.users import UserQueries
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


class _OpenSnapshot:
    """One read-only connection to one snapshot file, its table list and lookup indexes."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        try:
            self.connection = duckdb.connect(str(snapshot.path), read_only=True)
        except duckdb.Error as exc:
            raise _unreadable(snapshot, exc) from None
        try:
            self.tables = frozenset(warehouse_tables(self.connection))
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


class SnapshotReader(
    MetaQueries,
    UserQueries,
    TrendQueries,
    FunnelQueries,
    SegmentQueries,
    PredictionQueries,
    AnomalyQueries,
    RecommendationQueries,
):
    """Read-only access to one serving snapshot. Use one per request; close it afterwards.

    The plumbing (connection, cursor, table bookkeeping) is here; the queries come from the
    area mixins in ``ubap_assets.warehouse.queries``.
    """

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

    def keyed(self, table: str, key: str, order: tuple[str, ...] = ()) -> "_KeyedTable":
        """``table`` in memory sorted by ``key``, shared by every reader of this snapshot."""
        self.tables_read.add(table)
        return self._entry.keyed(table, key, order)


def open_reader(snapshot_dir: Path | None = None) -> SnapshotReader:
    """A reader bound to the snapshot CURRENT names now.

    Raises NoSnapshotError if none is published, UnreadableSnapshotError if it is broken.
    """
    return SnapshotReader(resolve_snapshot(snapshot_dir or default_snapshot_dir()))


def close_idle_connections() -> None:
    """Close cached connections no reader is using (the next reader reopens what it needs)."""
    _CONNECTIONS.clear()
