"""Immutable serving snapshots and the atomic CURRENT pointer.

Dagster-free. DuckDB allows one writer or many readers of a file, never both, so the API and
the dashboard never open the warehouse: the last asset of a run copies the serving tables into
a new file ``<snapshot_id>.duckdb`` and then swaps the one-line ``CURRENT`` file with an atomic
``os.replace``. Readers resolve ``CURRENT`` once per request and read that file only; a failed
run never touches the pointer, so the previous snapshot stays in service.
"""

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from ubap_assets.core.schema import EVENTS_SCHEMA
from ubap_assets.warehouse.introspect import table_columns, warehouse_tables

CURRENT_POINTER = "CURRENT"
_SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Row order inside a snapshot: tables read per user/page are stored clustered on that key, so
# DuckDB's per-row-group min/max skip almost everything on a point lookup. The first listed
# column must exist; the others are used when present. The events are clustered by user only:
# a lookup orders a user's few hundred rows itself, and sorting 9M rows by time within each user
# as well took 1.8 s more of a 10M publish (7.7 s against 5.9 s).
CLUSTER_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("user_id",),
    "users": ("user_id",),
    "user_features": ("user_id",),
    "user_segments": ("user_id",),
    "user_predictions": ("user_id",),
    "user_recommendations": ("user_id", "rank"),
    "similar_pages": ("page_id", "rank"),
    "pages": ("page_id",),
}


# What a snapshot holds of a table, where that is less than the whole warehouse table.
# `events` is the only raw table a reader touches, and only for a user's latest activity
# (reader.recent_activity; the API's `activity` parameter allows at most 200 rows): the snapshot
# keeps each user's newest RECENT_EVENTS_PER_USER events and the columns shown, not every event.
# Everything aggregated from the events is served from the derived tables.
RECENT_EVENTS_PER_USER = 200
RECENT_EVENT_COLUMNS = tuple(c for c in EVENTS_SCHEMA if c != "traffic_source")

TABLE_STATUS = "table_status"  # one row per served table: refreshed by the run, or why not

# The tables written only into a snapshot (never into the warehouse).
CHECK_RESULTS_SCHEMA: dict[str, pl.DataType] = {
    "asset_key": pl.String,
    "check_name": pl.String,
    "status": pl.String,  # passed | failed | skipped (too little data, no ground truth)
    "passed": pl.Boolean,  # null when skipped
    "severity": pl.String,
    "blocking": pl.Boolean,
    "description": pl.String,
    "evaluated_at": pl.Datetime("us"),
    "run_id": pl.String,
}

TABLE_STATUS_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String,
    "refreshed": pl.Boolean,
    "reason": pl.String,  # NULL when refreshed; else why the served data is older than the run
    "materialized_at": pl.Datetime("us"),  # when the served data was written (NULL: unknown)
}

SNAPSHOT_META_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_id": pl.String,
    "run_id": pl.String,
    "materialized_at": pl.Datetime("us"),
    "data_start": pl.Date,
    "data_end": pl.Date,
    "tables": pl.String,  # comma-separated, the tables copied from the warehouse
    "missing_tables": pl.String,  # comma-separated SERVING_TABLES absent from the warehouse
}


def snapshot_meta_frame(
    snapshot_id: str,
    run_id: str,
    materialized_at: datetime,
    data_start: date | None,
    data_end: date | None,
    tables: Sequence[str],
    missing_tables: Sequence[str],
) -> pl.DataFrame:
    """The one-row snapshot_meta table."""
    row = {
        "snapshot_id": snapshot_id,
        "run_id": run_id,
        "materialized_at": materialized_at,
        "data_start": data_start,
        "data_end": data_end,
        "tables": ",".join(tables),
        "missing_tables": ",".join(missing_tables),
    }
    return pl.DataFrame([row], schema=SNAPSHOT_META_SCHEMA)


def read_table_status(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Table name -> reason, for the served tables the publishing run did NOT refresh.

    ``con`` is a connection to a snapshot. Empty when every table is fresh, and for snapshots
    published before table_status existed.
    """
    present = TABLE_STATUS in warehouse_tables(con)
    if not present:
        return {}
    rows = con.execute(
        f"SELECT table_name, coalesce(reason, 'not refreshed') FROM main.{TABLE_STATUS} "
        "WHERE NOT refreshed ORDER BY table_name"
    ).fetchall()
    return {name: reason for name, reason in rows}


class NoSnapshotError(RuntimeError):
    """Nothing has been published yet: the pipeline has not completed a run."""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    path: Path


@dataclass(frozen=True)
class SnapshotBase:
    """A published snapshot a new one starts from (its file is copied, not re-derived), and what
    the warehouse rewrote since it was published.

    ``unchanged``: tables the warehouse has not rewritten since; the base's copy is kept as is.
    ``events_since``: the first day whose events were rewritten since (None: no event was); the
    recent events are then the base's rows of earlier days plus the warehouse's rows of the
    days from there, so a nightly publish reads one or two days of events, not the history.
    ``events`` must be in ``unchanged`` or have ``events_since`` set to be derived incrementally;
    otherwise it is rebuilt from the whole table.
    """

    path: Path
    unchanged: frozenset[str] = frozenset()
    events_since: date | None = None


def current_snapshot(snapshot_dir: Path) -> Snapshot:
    """The snapshot the pointer names; raises NoSnapshotError when there is none."""
    pointer = snapshot_dir / CURRENT_POINTER
    try:
        snapshot_id = pointer.read_text().strip()
    except FileNotFoundError:
        raise NoSnapshotError(
            f"no serving snapshot in {snapshot_dir}: run `make up` (or materialize the "
            "`serving_snapshot` asset) to publish one"
        ) from None
    path = snapshot_dir / f"{snapshot_id}.duckdb"
    if not _SNAPSHOT_ID.match(snapshot_id) or not path.exists():
        raise NoSnapshotError(f"the snapshot pointer {pointer} names a missing file {path.name}")
    return Snapshot(snapshot_id, path)


def publish_snapshot(
    warehouse: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    snapshot_dir: Path,
    snapshot_id: str,
    keep: int = 3,
    extra: Mapping[str, pl.DataFrame] | None = None,
    carried: Mapping[str, Path] | None = None,
    base: SnapshotBase | None = None,
) -> Snapshot:
    """Copy ``tables`` from the open warehouse into a new snapshot file and make it current.

    ``extra`` frames (snapshot_meta, check_results, table_status) are written into the snapshot
    only, never into the warehouse. ``carried`` maps a table to an older snapshot file to copy
    it from instead of the warehouse (its warehouse version failed a blocking check). Tables
    missing from the warehouse are skipped (the caller records which). The new file is complete
    and closed before the pointer moves; the ``keep`` newest snapshots stay on disk so a reader
    that resolved an older pointer a moment ago can finish.

    The staging file is removed whatever goes wrong (a full disk included), and staging files
    that a crashed earlier publish left behind are removed first: only one process can write
    the warehouse, so no other publish can be under way.

    With a ``base`` the new file starts as a copy of the base's file: its unchanged tables stay,
    the others are replaced, and the recent events are brought up to date from the changed days
    only. The result holds the same rows as a publish from scratch.
    """
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise ValueError(f"snapshot id {snapshot_id!r} must be letters, digits, '_', '.', '-'")
    carried = dict(carried or {})
    for name in [*tables, *(extra or {}), *carried]:
        if not _TABLE_NAME.match(name):
            raise ValueError(f"table name {name!r} must be snake_case letters and digits")
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    final = snapshot_dir / f"{snapshot_id}.duckdb"
    if final.exists():
        raise FileExistsError(f"snapshot {final.name} already exists; snapshots are immutable")
    prune_staging(snapshot_dir)
    staging = snapshot_dir / f".{snapshot_id}{_STAGING_SUFFIX}"
    alias = f"ubap_staging_{secrets.token_hex(4)}"
    present = warehouse_tables(warehouse)
    attached = False
    try:
        if base is not None:
            shutil.copyfile(base.path, staging)
        warehouse.execute(f"ATTACH '{_sql_literal(staging)}' AS {alias}")
        attached = True
        held = _catalog_tables(warehouse, alias)
        wanted = {name for name in tables if name in carried or name in present}
        for name in sorted(held - wanted):  # the base's tables this snapshot does not serve
            warehouse.execute(f'DROP TABLE {alias}."{name}"')
        for table in tables:
            if table not in wanted:
                continue
            if base is not None and table in held:
                if _base_copy_is_current(warehouse, alias, table, base, carried, present):
                    continue
                warehouse.execute(f'DROP TABLE {alias}."{table}"')
            if table in carried:
                _copy_carried(warehouse, alias, table, carried[table])
            else:
                _copy_table(warehouse, alias, table)
        for name, frame in (extra or {}).items():
            view = f"ubap_extra_{name}"
            warehouse.register(view, frame)
            try:
                warehouse.execute(
                    f'CREATE OR REPLACE TABLE {alias}."{name}" AS SELECT * FROM "{view}"'
                )
            finally:
                warehouse.unregister(view)
        warehouse.execute(f"DETACH {alias}")
        attached = False
        os.replace(staging, final)
    except BaseException:
        if attached:
            # On a full disk DETACH fails too; the file is removed below all the same.
            with contextlib.suppress(duckdb.Error):
                warehouse.execute(f"DETACH {alias}")
        _remove_staging(staging)
        raise
    _write_atomically(snapshot_dir / CURRENT_POINTER, snapshot_id + "\n")
    _prune(snapshot_dir, keep=keep, current=final)
    return Snapshot(snapshot_id, final)


_STAGING_SUFFIX = ".staging.duckdb"


def _remove_staging(staging: Path) -> None:
    for path in (staging, staging.with_name(staging.name + ".wal")):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def prune_staging(snapshot_dir: Path) -> list[str]:
    """Remove the staging files (and the pointer's temp file) a crashed publish left behind."""
    removed = []
    for path in snapshot_dir.glob(".*"):
        name = path.name
        if name.endswith((_STAGING_SUFFIX, _STAGING_SUFFIX + ".wal", ".tmp")) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(name)
    return removed


def _cluster_order(table: str, columns: list[str]) -> str:
    """`` ORDER BY`` the table's cluster keys that it has (none when it lacks the first)."""
    keys = CLUSTER_KEYS.get(table, ())
    if not keys or keys[0] not in columns:
        return ""
    return " ORDER BY " + ", ".join(f'"{k}"' for k in keys if k in columns)


def _recent_event_columns(warehouse: duckdb.DuckDBPyConnection) -> tuple[list[str], str, str]:
    """The events' columns a snapshot keeps, as a list and quoted for a SELECT, and the window
    order that puts a user's newest event first (event_id breaking ties in time)."""
    kept = [c for c in RECENT_EVENT_COLUMNS if c in table_columns(warehouse, EVENTS_TABLE)]
    newest = "event_ts DESC" + (", event_id DESC" if "event_id" in kept else "")
    return kept, ", ".join(f'"{c}"' for c in kept), newest


@contextlib.contextmanager
def _temporary_tables(warehouse: duckdb.DuckDBPyConnection, *stems: str) -> Iterator[list[str]]:
    """Unique names ``ubap_<stem>_<token>`` for temporary tables, dropped when the block ends."""
    token = secrets.token_hex(4)
    names = [f"ubap_{stem}_{token}" for stem in stems]
    try:
        yield names
    finally:
        for name in names:
            warehouse.execute(f"DROP TABLE IF EXISTS {name}")


def _copy_recent_events(warehouse: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Copy each user's newest RECENT_EVENTS_PER_USER events into the snapshot, clustered.

    Only the users with more than that are ranked (a window sorts every row it sees), and their
    kept rows go to a temporary table first: a window and the other users' rows feeding one
    sort ran out of memory under the publish's cap (365 days of 20k users at 512 MiB), while
    each step alone spills. Everyone else keeps every row as it is. A null user_id counts as
    one user, as a window's partition would.
    """
    kept, cols, newest = _recent_event_columns(warehouse)
    limit = int(RECENT_EVENTS_PER_USER)
    events = f'main."{EVENTS_TABLE}"'
    with _temporary_tables(warehouse, "heavy_users", "ranked_events") as (heavy, ranked):
        warehouse.execute(
            f"CREATE TEMP TABLE {heavy} AS SELECT user_id FROM {events} GROUP BY user_id "
            f"HAVING count(*) > {limit}"
        )
        warehouse.execute(
            f"CREATE TEMP TABLE {ranked} AS SELECT {cols} FROM {events} WHERE user_id IS NULL "
            f"OR user_id IN (SELECT user_id FROM {heavy}) "
            f"QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {newest}) <= {limit}"
        )
        warehouse.execute(
            f'CREATE TABLE {alias}."{EVENTS_TABLE}" AS SELECT * FROM ('
            f"SELECT {cols} FROM {events} ANTI JOIN {heavy} USING (user_id) "
            f"WHERE user_id IS NOT NULL UNION ALL SELECT * FROM {ranked})"
            + _cluster_order(EVENTS_TABLE, kept)
        )


def _catalog_tables(con: duckdb.DuckDBPyConnection, catalog: str) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_schema = 'main'",
        [catalog],
    ).fetchall()
    return {name for (name,) in rows}


def _base_copy_is_current(
    warehouse: duckdb.DuckDBPyConnection,
    alias: str,
    table: str,
    base: SnapshotBase,
    carried: Mapping[str, Path],
    present: set[str],
) -> bool:
    """Whether the base's copy of ``table`` (already in the staging file) is what a publish
    from scratch would write, after bringing the recent events up to date where it can."""
    if table in carried:
        return carried[table] == base.path
    if table in base.unchanged:
        return True
    if table == EVENTS_TABLE and base.events_since is not None and table in present:
        return _refresh_recent_events(warehouse, alias, base.events_since)
    return False


EVENTS_TABLE = "events"
# Row groups (DuckDB's unit of min/max skipping) an appended events table may hold beyond the
# number its rows need before it is rewritten clustered: each nightly append adds one or two.
_ROW_GROUP_ROWS = 122_880
_SPARE_ROW_GROUPS = 0.25


def _refresh_recent_events(warehouse: duckdb.DuckDBPyConnection, alias: str, since: date) -> bool:
    """Bring the staging file's recent events (the base's) up to date with the warehouse's events
    of the days from ``since`` on; False where that cannot give the rows a publish from scratch
    would (the caller rebuilds the table).

    Each user keeps their newest RECENT_EVENTS_PER_USER events: the base holds those of the old
    state; events before ``since`` did not change, so the newest of the new state are among the
    base's rows before ``since`` and the warehouse's rows from ``since`` on, unless a user lost
    events in the rewritten days (then the base may have cut rows that are needed now).

    Only the rewritten days are ranked (a top-N per user over one or two days of events); of the
    base's rows, a user whose new rows pass the limit loses just their oldest few, found by a
    bounded per-user minimum (``arg_min(..., n)``) instead of a window over every held row.
    """
    kept, cols, newest = _recent_event_columns(warehouse)
    if table_columns(warehouse, EVENTS_TABLE, alias) != kept or "user_id" not in kept:
        return False
    target = f'{alias}."{EVENTS_TABLE}"'
    start = datetime(since.year, since.month, since.day)
    oldest = "(t.event_ts, t.event_id)" if "event_id" in kept else "t.event_ts"
    limit = int(RECENT_EVENTS_PER_USER)
    with _temporary_tables(warehouse, "fresh_events", "held_events") as (fresh, held):
        # The rewritten days' newest rows per user, and what the base holds of those users.
        warehouse.execute(
            f'CREATE TEMP TABLE {fresh} AS SELECT {cols} FROM main."{EVENTS_TABLE}" '
            f"WHERE event_ts >= ? QUALIFY row_number() OVER (PARTITION BY user_id "
            f"ORDER BY {newest}) <= ?",
            [start, limit],
        )
        warehouse.execute(
            f"CREATE TEMP TABLE {held} AS "
            f"WITH now AS (SELECT user_id, count(*) AS fresh FROM {fresh} GROUP BY 1), "
            f"base AS (SELECT user_id, count(*) AS held, "
            f"count(*) FILTER (WHERE event_ts >= ?) AS rewritten FROM {target} "
            f"WHERE user_id IN (SELECT user_id FROM now UNION ALL "
            f"SELECT user_id FROM {target} WHERE event_ts >= ?) GROUP BY 1) "
            "SELECT user_id, held, rewritten, coalesce(fresh, 0) AS fresh "
            "FROM base LEFT JOIN now USING (user_id)",
            [start, start],
        )
        # A user whose base rows were cut at the limit and who now has fewer rows in the
        # rewritten days than the base held there: rows cut then may be needed now.
        short = warehouse.execute(
            f"SELECT count(*) FROM {held} WHERE held >= ? AND fresh < rewritten", [limit]
        ).fetchone()[0]
        if short:
            return False
        warehouse.execute(f"DELETE FROM {target} WHERE event_ts >= ?", [start])
        warehouse.execute(
            f"INSERT INTO {target} SELECT * FROM {fresh}" + _cluster_order(EVENTS_TABLE, kept)
        )
        # Each user over the limit now loses their oldest rows before the rewritten days.
        most = warehouse.execute(
            f"SELECT max(held - rewritten + fresh - ?) FROM {held}", [limit]
        ).fetchone()[0]
        if most is not None and most > 0:
            warehouse.execute(
                f"DELETE FROM {target} WHERE rowid IN (SELECT unnest(list_slice("
                f"arg_min(t.rowid, {oldest}, {int(most)}), 1, x.excess)) "
                f"FROM {target} t JOIN (SELECT user_id, held - rewritten + fresh - ? AS excess "
                f"FROM {held} WHERE held - rewritten + fresh > ?) x USING (user_id) "
                "WHERE t.event_ts < ? GROUP BY t.user_id, x.excess)",
                [limit, limit, start],
            )
    _recluster_if_fragmented(warehouse, alias)
    return True


def _recluster_if_fragmented(warehouse: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Rewrite the events clustered by user once appends spread them over too many row groups
    (a user's lookup reads one row group per append), from the staging copy itself."""
    target = f'{alias}."{EVENTS_TABLE}"'
    rows = warehouse.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    groups = warehouse.execute(
        f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{alias}.{EVENTS_TABLE}')"
    ).fetchone()[0]
    needed = -(-rows // _ROW_GROUP_ROWS)
    if groups <= needed * (1 + _SPARE_ROW_GROUPS) + 2:
        return
    order = ", ".join(f'"{k}"' for k in CLUSTER_KEYS[EVENTS_TABLE])
    clustered = f"ubap_clustered_{secrets.token_hex(4)}"
    warehouse.execute(
        f"CREATE TABLE {alias}.{clustered} AS SELECT * FROM {target} ORDER BY {order}"
    )
    warehouse.execute(f"DROP TABLE {target}")
    warehouse.execute(f'ALTER TABLE {alias}.{clustered} RENAME TO "{EVENTS_TABLE}"')


def _copy_table(warehouse: duckdb.DuckDBPyConnection, alias: str, table: str) -> None:
    """Copy a warehouse table into the snapshot, clustered (the events: each user's newest)."""
    if table == EVENTS_TABLE:
        _copy_recent_events(warehouse, alias)
        return
    order = _cluster_order(table, table_columns(warehouse, table))
    warehouse.execute(f'CREATE TABLE {alias}."{table}" AS SELECT * FROM main."{table}"{order}')


def _copy_carried(
    warehouse: duckdb.DuckDBPyConnection, alias: str, table: str, previous: Path
) -> None:
    """Copy ``table`` as an earlier snapshot holds it (already trimmed and clustered)."""
    source = f"ubap_previous_{secrets.token_hex(4)}"
    warehouse.execute(f"ATTACH '{_sql_literal(previous)}' AS {source} (READ_ONLY)")
    try:
        warehouse.execute(f'CREATE TABLE {alias}."{table}" AS SELECT * FROM {source}."{table}"')
    finally:
        warehouse.execute(f"DETACH {source}")


def snapshot_tables(path: Path) -> set[str]:
    """Names of the tables a published snapshot file holds."""
    with duckdb.connect(str(path), read_only=True) as con:
        return warehouse_tables(con)


def _sql_literal(path: Path) -> str:
    # ATTACH takes no bound parameters; the path is ours (snapshot id validated above).
    return str(path).replace("'", "''")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _prune(snapshot_dir: Path, keep: int, current: Path) -> None:
    snapshots = sorted(
        (p for p in snapshot_dir.glob("*.duckdb") if not p.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    for old in snapshots[max(keep, 1) :]:
        if old != current:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".wal").unlink(missing_ok=True)


def list_snapshots(snapshot_dir: Path) -> list[Snapshot]:
    """Published snapshots on disk, newest first."""
    files = sorted(
        (p for p in snapshot_dir.glob("*.duckdb") if not p.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    return [Snapshot(p.stem, p) for p in files]
