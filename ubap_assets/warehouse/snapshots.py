"""Immutable serving snapshots and the atomic CURRENT pointer.

Dagster-free. DuckDB allows one writer or many readers of a file, never both, so the API and
the dashboard never open the warehouse: the last asset of a run copies the serving tables into
a new file ``<snapshot_id>.duckdb`` and then swaps the one-line ``CURRENT`` file with an atomic
``os.replace``. Readers resolve ``CURRENT`` once per request and read that file only; a failed
run never touches the pointer, so the previous snapshot stays in service.
"""

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

CURRENT_POINTER = "CURRENT"
_SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Row order inside a snapshot: tables read per user/page are stored clustered on that key, so
# DuckDB's per-row-group min/max skip almost everything on a point lookup. The first listed
# column must exist; the others are used when present.
CLUSTER_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "event_ts"),
    "users": ("user_id",),
    "user_features": ("user_id",),
    "user_segments": ("user_id",),
    "user_predictions": ("user_id",),
    "user_recommendations": ("user_id", "rank"),
    "similar_pages": ("page_id", "rank"),
    "pages": ("page_id",),
}


# The two tables written only into a snapshot (never into the warehouse).
CHECK_RESULTS_SCHEMA: dict[str, pl.DataType] = {
    "asset_key": pl.String,
    "check_name": pl.String,
    "passed": pl.Boolean,
    "severity": pl.String,
    "blocking": pl.Boolean,
    "description": pl.String,
    "evaluated_at": pl.Datetime("us"),
    "run_id": pl.String,
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


class NoSnapshotError(RuntimeError):
    """Nothing has been published yet: the pipeline has not completed a run."""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    path: Path


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


def warehouse_tables(warehouse: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables in the warehouse's main schema."""
    rows = warehouse.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {name for (name,) in rows}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [name for (name,) in rows]


def publish_snapshot(
    warehouse: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    snapshot_dir: Path,
    snapshot_id: str,
    keep: int = 3,
    extra: Mapping[str, pl.DataFrame] | None = None,
) -> Snapshot:
    """Copy ``tables`` from the open warehouse into a new snapshot file and make it current.

    ``extra`` frames (snapshot_meta, check_results) are written into the snapshot only, never
    into the warehouse. Tables missing from the warehouse are skipped (the caller records
    which). The new file is complete and closed before the pointer moves; the ``keep`` newest
    snapshots stay on disk so a reader that resolved an older pointer a moment ago can finish.
    """
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise ValueError(f"snapshot id {snapshot_id!r} must be letters, digits, '_', '.', '-'")
    for name in [*tables, *(extra or {})]:
        if not _TABLE_NAME.match(name):
            raise ValueError(f"table name {name!r} must be snake_case letters and digits")
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    final = snapshot_dir / f"{snapshot_id}.duckdb"
    if final.exists():
        raise FileExistsError(f"snapshot {final.name} already exists; snapshots are immutable")
    staging = snapshot_dir / f".{snapshot_id}.staging.duckdb"
    staging.unlink(missing_ok=True)
    alias = "ubap_snapshot_staging"
    present = warehouse_tables(warehouse)
    warehouse.execute(f"ATTACH '{_sql_literal(staging)}' AS {alias}")
    try:
        for table in tables:
            if table not in present:
                continue
            columns = _columns(warehouse, table)
            keys = CLUSTER_KEYS.get(table, ())
            order = ""
            if keys and keys[0] in columns:
                order = " ORDER BY " + ", ".join(f'"{k}"' for k in keys if k in columns)
            warehouse.execute(
                f'CREATE TABLE {alias}."{table}" AS SELECT * FROM main."{table}"{order}'
            )
        for name, frame in (extra or {}).items():
            view = f"ubap_extra_{name}"
            warehouse.register(view, frame)
            try:
                warehouse.execute(f'CREATE TABLE {alias}."{name}" AS SELECT * FROM "{view}"')
            finally:
                warehouse.unregister(view)
    except BaseException:
        warehouse.execute(f"DETACH {alias}")
        staging.unlink(missing_ok=True)
        staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
        raise
    warehouse.execute(f"DETACH {alias}")
    os.replace(staging, final)
    _write_atomically(snapshot_dir / CURRENT_POINTER, snapshot_id + "\n")
    _prune(snapshot_dir, keep=keep, current=final)
    return Snapshot(snapshot_id, final)


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
