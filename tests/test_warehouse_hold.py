"""The warehouse resource holds the file open for its run: the run's connections share one open
database, a connection's cached blocks are given back when it closes unless they are few, and
the file is free for other processes once the run ends."""

import subprocess
import sys

import dagster as dg
import duckdb
import polars as pl

from ubap_assets.lib import warehouse_io
from ubap_assets.lib.warehouse_io import (
    DuckDBWarehouseIOManager,
    WarehouseResource,
    _cached_bytes,
)

OPENS = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"


def _another_process_opens(path) -> bool:
    return (
        subprocess.run([sys.executable, "-c", OPENS, str(path)], capture_output=True).returncode
        == 0
    )


def test_holds_count_and_the_file_is_free_after_the_last_release(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    warehouse_io.hold_warehouse(path)
    warehouse_io.hold_warehouse(path)
    try:
        with warehouse_io.warehouse_connection(path) as con:
            con.execute("CREATE TABLE t AS SELECT 1 AS x")
        warehouse_io.release_warehouse(path)
        assert path in warehouse_io._held
        assert not _another_process_opens(path)
    finally:
        warehouse_io.release_warehouse(path)
    assert path not in warehouse_io._held
    assert _another_process_opens(path)
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT x FROM t").fetchone() == (1,)


def test_a_closed_connection_leaves_a_large_cache_trimmed_and_a_small_one_kept(
    tmp_path, monkeypatch
):
    path = str(tmp_path / "warehouse.duckdb")
    monkeypatch.setattr(warehouse_io, "KEEP_CACHED_BYTES", 8 << 20)
    with duckdb.connect(path) as con:
        con.execute(
            "CREATE TABLE big AS SELECT range AS x, range::VARCHAR AS s FROM range(3e6::BIGINT)"
        )
    warehouse_io.hold_warehouse(path)
    try:
        held = warehouse_io._held[path][0]
        scan = "SELECT count(DISTINCT s), sum(x) FROM big"
        untrimmed = warehouse_io.connect_warehouse(path)
        untrimmed.execute(scan).fetchall()
        untrimmed.close()
        assert _cached_bytes(held) > 8 << 20  # without the trim, the scan's blocks stay
        with warehouse_io.warehouse_connection(path) as con:
            con.execute(scan).fetchall()
        assert _cached_bytes(held) <= 1 << 20  # above the kept size: trimmed to the trim cap
        with warehouse_io.warehouse_connection(path) as con:
            con.execute("SELECT max(s) FROM big WHERE x < 500000").fetchall()
        # a cache under the kept size (about 2 MiB) stays for the next step, untrimmed
        assert 1 << 20 < _cached_bytes(held) <= 8 << 20
        limit = held.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit.replace(".0", "") == "1 GiB"  # the cap is back, a 1 GiB floor here
    finally:
        warehouse_io.release_warehouse(path)


@dg.asset
def held_during_the_run(warehouse: WarehouseResource) -> pl.DataFrame:
    with warehouse.get_connection() as con:
        con.execute("SELECT 1").fetchone()
    return pl.DataFrame({"held": [sorted(warehouse_io._held)]})


def test_the_resource_holds_the_warehouse_for_its_run(tmp_path):
    path = str(tmp_path / "warehouse.duckdb")
    result = dg.materialize(
        [held_during_the_run],
        resources={
            "warehouse": WarehouseResource(database=path),
            "io_manager": DuckDBWarehouseIOManager(database=path),
        },
    )
    assert result.success
    assert path not in warehouse_io._held
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT held FROM held_during_the_run").fetchone()[0] == [path]


def test_memory_share_lowers_the_cap_for_a_block_and_restores_it(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")

    with warehouse_io.warehouse_connection(database) as con:
        full = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        with warehouse_io.memory_share(con, database, 0.5):
            half = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        after = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        try:
            with warehouse_io.memory_share(con, database, 0.25):
                raise RuntimeError("the block fails")
        except RuntimeError:
            pass
        after_failure = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert full == after == after_failure and half != full
    assert half.startswith("512") and full.startswith("1")  # 1 GiB floor, halved


def test_every_connection_sets_the_cap_again_on_a_held_database(tmp_path):
    # The repeated SET is kept on purpose: it also makes DuckDB give back its allocator's free
    # memory (warehouse_io._cap_memory).
    database = str(tmp_path / "warehouse.duckdb")
    warehouse_io.hold_warehouse(database)
    try:
        with warehouse_io.warehouse_connection(database) as con:
            full = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        warehouse_io._held[database][0].execute("SET memory_limit = '300MiB'")
        with warehouse_io.warehouse_connection(database) as con:
            assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == full
    finally:
        warehouse_io.release_warehouse(database)
