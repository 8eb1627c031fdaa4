"""The IO manager that stores polars frames as DuckDB tables, one table per asset.

dagster-duckdb-polars inserts by column position into an existing table, in a separate
statement from its delete; a renamed column breaks the next run and a crash between the two
leaves a half-written table. This one replaces a whole table in one statement and overwrites
a partition's time window inside one transaction, so a table is always either the old or the
new version, and re-materializing a partition is idempotent.
"""

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.engines import uses_spark
from ubap_assets.engines.lake import MIRRORED_TABLES, attach_views, write_mirror
from ubap_assets.lib.table_docs import column_schema
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.paths import lake_dir

# The warehouse engine's memory cap: the warehouse file's size, within these bounds. DuckDB's
# default is 80% of the machine's memory, and it grows its hash tables, sorts and block cache
# up to it; under the cap it spills them to a temporary folder next to the file instead. A
# 10M-event warehouse (a few hundred MB) gets the floor, a 100M-event one a few GB.
WAREHOUSE_MEMORY_FLOOR = 1 << 30
WAREHOUSE_MEMORY_CEILING = 4 << 30


def warehouse_memory_limit(database: str) -> int:
    """Bytes the engine may hold for ``database``: its file size, within the floor and ceiling."""
    size = os.path.getsize(database) if database != ":memory:" and os.path.exists(database) else 0
    return min(max(size, WAREHOUSE_MEMORY_FLOOR), WAREHOUSE_MEMORY_CEILING)


# How long a step waits for another process's hold on the warehouse file. The default instance
# runs one run at a time, so it never waits; the PostgreSQL instance of the scale path runs
# several, and their DuckDB steps take the file in turn (DuckDB stays one writer).
WAREHOUSE_LOCK_WAIT_S = 30 * 60


def _connect_when_free(database: str, wait_s: float = WAREHOUSE_LOCK_WAIT_S):
    """``duckdb.connect(database)``, retried while another process holds the file's lock."""
    deadline = time.monotonic() + wait_s
    pause = 0.5
    while True:
        try:
            return duckdb.connect(database)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


# Databases this process holds open for the length of a run (refcounted by database path).
# Opening a DuckDB file costs about 20 ms (a new database instance, its catalogue read); while
# one connection stays open, DuckDB hands a second connect to the same file the open database
# (microseconds). A nightly run opens the warehouse about a hundred times.
_held: dict[str, tuple[duckdb.DuckDBPyConnection, int]] = {}
# The cap set for a moment to make the held database drop its cached blocks (see _trim).
_TRIM_LIMIT = "1MiB"
# A held database keeps up to this much cache between steps. Dropping a small cache costs more
# than it saves: the next step reads the blocks again (on the default world, whose caches stay
# under 50 MiB, trimming after every connection took 2.3 s of a 16 s night).
KEEP_CACHED_BYTES = 128 << 20


def hold_warehouse(database: str) -> None:
    """Keep ``database`` open in this process until the matching ``release_warehouse``. The
    `warehouse` resource holds it from its setup to its teardown: for a whole run under the
    in-process executor, for one step under the multiprocess one; the IO manager's connections
    (same configuration) share it. The file stays locked against other processes meanwhile, as
    it is while a step works on it."""
    if database == ":memory:":
        return
    con, count = _held.get(database, (None, 0))
    _held[database] = (con or _connect_when_free(database), count + 1)


def release_warehouse(database: str) -> None:
    con, count = _held.get(database, (None, 0))
    if con is None:
        return
    if count > 1:
        _held[database] = (con, count - 1)
        return
    del _held[database]
    con.close()


def _cached_bytes(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] or 0


def _trim(database: str) -> None:
    """Make a held database give back the blocks its last connection cached, when they exceed
    ``KEEP_CACHED_BYTES``: a held database keeps its buffer pool between steps, which would
    otherwise add one step's working set to the next step's memory. DuckDB evicts unpinned
    blocks to meet a lowered cap; the cap returns at once."""
    held = _held.get(database)
    if held is None:
        return
    con = held[0]
    if _cached_bytes(con) <= KEEP_CACHED_BYTES:
        return
    try:
        con.execute(f"SET memory_limit = '{_TRIM_LIMIT}'")
    except duckdb.Error:  # another open connection pins more than the cap: nothing to give back
        pass
    _cap_memory(con, database)


def _cap_memory(con: duckdb.DuckDBPyConnection, database: str, share: float = 1.0) -> None:
    # Set on every connection, even when the held database has this cap already: a SET also
    # makes DuckDB give its allocator's free memory back (a query's 289 MiB RSS fell to 181
    # MiB). Skipping the repeats saved 0.28 s of a night and cost the 10M run's later stages
    # 150-200 MiB of peak RSS.
    limit = max(int(warehouse_memory_limit(database) * share), 64 << 20)
    con.execute(f"SET memory_limit = '{limit >> 20}MiB'")


@contextmanager
def memory_share(con: duckdb.DuckDBPyConnection, database: str, share: float) -> Iterator[None]:
    """Run a block with the engine capped at ``share`` of ``warehouse_memory_limit``, for work
    that spills to disk at little cost (a streaming copy, a sort); the cap returns after."""
    _cap_memory(con, database, share)
    try:
        yield
    finally:
        _cap_memory(con, database)


@contextmanager
def warehouse_connection(database: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection from ``connect_warehouse``, closed (and the held database trimmed) after."""
    con = connect_warehouse(database)
    try:
        yield con
    finally:
        con.close()
        _trim(database)


def connect_warehouse(database: str) -> duckdb.DuckDBPyConnection:
    """The one way the pipeline opens the warehouse: read-write, DuckDB's default configuration,
    then ``SET memory_limit`` (warehouse_memory_limit, taken when the connection opens).

    DuckDB refuses a second connection to a file that one process already has open with another
    configuration ("Can't open a connection to same database file with a different
    configuration"). The IO manager and the `warehouse` resource therefore connect identically,
    so even a connection that outlives its step (held by a failed step's traceback until the
    garbage collector runs) cannot break the steps after it. The memory cap is a SET on the
    open database, not a connect-time configuration, so a plain ``duckdb.connect`` to the same
    file (a test, a tool) still opens.

    With UBAP_ENGINE=spark the lake's tables are (re)attached as views (engines/lake.py), so
    every stage reads them as if they were warehouse tables.
    """
    con = _connect_when_free(database)
    _cap_memory(con, database)
    if uses_spark():
        try:
            attach_views(con, lake_dir())
        except Exception:
            con.close()
            raise
    return con


class WarehouseResource(DuckDBResource):
    """dagster-duckdb's DuckDBResource with three changes for a run of many steps in one
    process.

    The upstream ``get_connection`` closes its connection only when the block succeeds and adds
    a ``custom_user_agent`` setting that the IO manager's connections lack; after a step failed
    inside the block, its still-open connection made every later connection with the other
    configuration fail. This one always closes, and connects like the IO manager. And it holds
    the warehouse open while it is set up (``hold_warehouse``), so the run's connections reuse
    one open database. Assets keep annotating the resource as ``DuckDBResource``.
    """

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.connection_config:
            raise dg.DagsterInvariantViolationError(
                "the warehouse resource takes no connection_config: every connection to the "
                "file must share one configuration (see connect_warehouse)"
            )
        with warehouse_connection(self.database) as con:
            yield con

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        hold_warehouse(self.database)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        release_warehouse(self.database)


# Materialization metadata of an asset that met a known data problem (single-class labels, too
# few rows) and kept its previous table: the value says why. An output of None writes nothing.
NOT_REFRESHED = "ubap/not_refreshed"


def kept_previous(reason: str) -> dict[str, dg.MetadataValue]:
    """Metadata of an output that leaves the previous table in place (the output value is None)."""
    return {NOT_REFRESHED: dg.MetadataValue.text(reason)}


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _table_metadata(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> dict:
    total = con.execute(f'SELECT count(*) FROM main."{table}"').fetchone()[0]
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(int(total)),
        "rows_written": dg.MetadataValue.int(frame.height),
        "table": dg.MetadataValue.text(f"main.{table}"),
    }
    # The written columns and types, described from docs/tables/ (lib/table_docs.py).
    schema = column_schema(table, {name: str(kind) for name, kind in frame.schema.items()})
    if schema is not None:
        metadata["dagster/column_schema"] = schema
    return metadata


def replace_window(
    con: duckdb.DuckDBPyConnection,
    table: str,
    chunks: Iterable[pl.DataFrame],
    column: str,
    start: datetime,
    end: datetime,
) -> int:
    """Overwrite the rows of ``table`` with ``start <= column < end`` by ``chunks``, atomically.

    Chunks are inserted one by one (memory stays at one chunk) inside a single transaction; the
    table is created from the first chunk's columns if it does not exist. Returns rows written.
    """
    start, end = _naive_utc(start), _naive_utc(end)
    written = 0
    con.execute("BEGIN TRANSACTION")
    try:
        deleted = False
        for chunk in chunks:  # noqa: B007 - `chunk` is read by DuckDB's replacement scan
            con.execute(f'CREATE TABLE IF NOT EXISTS main."{table}" AS SELECT * FROM chunk LIMIT 0')
            if not deleted:
                con.execute(
                    f'DELETE FROM main."{table}" WHERE "{column}" >= ? AND "{column}" < ?',
                    [start, end],
                )
                deleted = True
            con.execute(f'INSERT INTO main."{table}" BY NAME SELECT * FROM chunk')
            written += chunk.height
        if not deleted and table in warehouse_tables(con):
            con.execute(
                f'DELETE FROM main."{table}" WHERE "{column}" >= ? AND "{column}" < ?', [start, end]
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return written


class DuckDBWarehouseIOManager(dg.ConfigurableIOManager):
    """Writes each asset's polars frame to ``main.<asset name>`` in the warehouse file."""

    database: str  # path of the DuckDB warehouse file

    def _connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return warehouse_connection(self.database)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame")
        table = context.asset_key.path[-1]
        frame = obj  # noqa: F841 - read by DuckDB's replacement scan below
        with self._connect() as con:
            if context.has_asset_partitions:
                column = context.definition_metadata.get("partition_expr")
                if not column:
                    raise dg.DagsterInvariantViolationError(
                        f"partitioned asset {table} needs 'partition_expr' metadata"
                    )
                window = context.asset_partitions_time_window
                replace_window(con, table, [obj], column, window.start, window.end)
            else:
                con.execute(f'CREATE OR REPLACE TABLE main."{table}" AS SELECT * FROM frame')
            context.add_output_metadata(_table_metadata(con, table, obj))
        if uses_spark() and table in MIRRORED_TABLES:
            write_mirror(lake_dir(), table, obj)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = context.upstream_output.asset_key.path[-1]
        with self._connect() as con:
            if table not in warehouse_tables(con):
                raise dg.Failure(
                    description=f"table main.{table} is not in the warehouse: materialize "
                    f"{table} first (a degraded run may have left it unwritten)"
                )
            return con.execute(f'SELECT * FROM main."{table}"').pl()
