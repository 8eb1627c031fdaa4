"""Steps of concurrent runs (the PostgreSQL instance) take the warehouse file in turn: a step
waits while another process holds DuckDB's lock, and gives up with DuckDB's error after its
wait."""

import subprocess
import sys
import time

import duckdb
import pytest

from ubap_assets.lib import warehouse_io

HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(float(sys.argv[2]))"  # noqa: E501


def _hold(path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_step_waits_for_the_file_another_run_holds(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = _hold(path, 3)
    started = time.monotonic()
    con = warehouse_io.connect_warehouse(str(path))
    try:
        assert holder.poll() is not None  # connected only once the holder let go
        assert time.monotonic() - started >= 1
        assert con.execute("SELECT 1").fetchone() == (1,)
    finally:
        con.close()
        holder.wait()


def test_a_step_gives_up_after_its_wait(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = _hold(path, 30)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            warehouse_io._connect_when_free(str(path), wait_s=1.5)
    finally:
        holder.kill()
        holder.wait()
