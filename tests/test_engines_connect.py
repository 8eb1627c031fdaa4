"""The Spark engine through Spark Connect (UBAP_SPARK_REMOTE), as production talks to a cluster:
a local Spark Connect server from pyspark's own scripts, the day tables built through it equal
DuckDB's, and an address where nothing listens is a clear error, not a hang.

Marked ``scale``: Java 17 and pyspark[connect] (`make install-scale`).
"""

import os
import socket
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest

from tests.test_engines import DAY_TABLES, _assert_same, _rows, both_engines_input
from ubap_assets.core import daily
from ubap_assets.core.synthetic import WorldSpec, generate_world
from ubap_assets.engines import lake

pytestmark = pytest.mark.scale


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    """sc://127.0.0.1:<port> of a Spark Connect server started for this module."""
    import pyspark

    home = Path(pyspark.__file__).parent
    folder = tmp_path_factory.mktemp("spark-connect")
    port = _free_port()
    env = os.environ | {
        "SPARK_HOME": str(home),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_PID_DIR": str(folder / "pids"),
    }
    script = home / "sbin" / "start-connect-server.sh"
    subprocess.run(
        ["bash", str(script), "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", "spark.ui.enabled=false"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    logs = "\n".join(p.read_text()[-2000:] for p in (folder / "logs").glob("*"))
                    pytest.fail(f"the Spark Connect server did not start:\n{logs}")
                time.sleep(1)
        yield f"sc://127.0.0.1:{port}"
    finally:
        subprocess.run(
            ["bash", str(home / "sbin" / "stop-connect-server.sh")], env=env, capture_output=True
        )


@pytest.fixture
def remote_only(monkeypatch):
    """No classic (local) Spark session in this process while a remote one is made: pyspark
    allows one kind at a time (SESSION_ALREADY_EXIST). The next caller starts afresh."""
    from pyspark.sql import SparkSession

    from ubap_assets.engines import spark

    def reset():
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        spark._session.cache_clear()

    reset()
    yield
    reset()


def test_day_tables_through_spark_connect_equal_duckdb(
    connect_url, remote_only, tmp_path, monkeypatch
):
    from ubap_assets.engines.spark import SparkDays, spark_session

    monkeypatch.setenv("UBAP_SPARK_REMOTE", connect_url)
    world = generate_world(WorldSpec(users=200, days=7, seed=11, start_date=date(2026, 5, 4)))
    con = both_engines_input(world, tmp_path)

    session = spark_session()
    assert type(session).__module__.startswith("pyspark.sql.connect")
    daily.build_all_daily(SparkDays(session, tmp_path))
    for table, order in DAY_TABLES.items():
        expected = _rows(con, f"SELECT * FROM {table}", order)
        _assert_same(expected, _rows(con, lake.scan_sql(tmp_path, table), order), table)


def test_unreachable_spark_connect_names_the_setting(monkeypatch):
    from ubap_assets.engines.spark import SparkUnavailableError, spark_session

    monkeypatch.setenv("UBAP_SPARK_REMOTE", f"sc://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    with pytest.raises(SparkUnavailableError, match="UBAP_SPARK_REMOTE"):
        spark_session()
    assert time.monotonic() - started < 30
