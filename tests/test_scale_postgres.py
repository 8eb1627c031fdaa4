"""The Dagster instance on PostgreSQL (ubap_assets/scale): the private cluster the make targets
start, the instance template, and what a user reads when the database is not there."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from ubap_assets.scale import postgres
from ubap_assets.scale.postgres import Cluster, PgConfig, PostgresError

pytestmark = pytest.mark.scale

TEMPLATE = Path(postgres.__file__).with_name("dagster_postgres.yaml")
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ubap_assets.scale.postgres", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data_dir():
    # Not under pytest's tmp folders: those are closed to other users, and as root the cluster
    # runs as the postgres OS user. Short, too: the Unix socket path has a length limit.
    folder = Path(tempfile.mkdtemp(prefix="ubap-pg-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_env(data_dir):
    """The UBAP_PG_* environment of a private cluster on a free port, started for the module."""
    env = {
        "UBAP_PG_HOST": "127.0.0.1",
        "UBAP_PG_PORT": str(free_port()),
        "UBAP_PG_USER": "ubap_test",
        "UBAP_PG_DB": "dagster_test",
        # A quote and a backslash: the password must reach the role unmangled.
        "UBAP_PG_PASSWORD": "pw'\\" + secrets.token_urlsafe(12),
    }
    cluster = Cluster.under(data_dir)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        message = postgres.start(PgConfig.from_env(), cluster)
        assert message.startswith("PostgreSQL started"), message
        try:
            yield env
        finally:
            postgres.stop(cluster)


def test_instance_from_template_stores_runs_in_postgres(pg_env, tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(TEMPLATE, home / "dagster.yaml")

    @dg.asset(pool="duckdb_warehouse")
    def tiny_table() -> int:
        return 3

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_launcher).__name__ == "MonitoredRunLauncher"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 4
        assert concurrency.pool_config.default_pool_limit == 1
        result = dg.materialize([tiny_table], instance=instance)
        assert result.success
        pool = instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
        assert pool.limit == 1 and pool.using_default_limit

    # Read the run back from PostgreSQL itself, as the instance's user over TCP.
    with (
        psycopg2.connect(
            host=pg_env["UBAP_PG_HOST"],
            port=int(pg_env["UBAP_PG_PORT"]),
            user=pg_env["UBAP_PG_USER"],
            password=pg_env["UBAP_PG_PASSWORD"],
            dbname=pg_env["UBAP_PG_DB"],
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s "
            "AND asset_key = %s",
            (result.run_id, "ASSET_MATERIALIZATION", '["tiny_table"]'),
        )
        assert cursor.fetchone() == (1,)
    assert not (home / "history").exists()  # no SQLite run storage beside it


def test_start_again_is_a_no_op_and_status_says_running(pg_env, data_dir):
    started = run_cli("start", "--data-dir", str(data_dir), env=pg_env)
    assert started.returncode == 0, started.stderr
    assert "already running" in started.stdout
    shown = run_cli("status", "--data-dir", str(data_dir), env=pg_env)
    assert shown.returncode == 0 and f"port {pg_env['UBAP_PG_PORT']}" in shown.stdout
    checked = run_cli("check", env=pg_env)
    assert checked.returncode == 0, checked.stderr


def test_wrong_password_names_the_password_setting(pg_env):
    config = PgConfig.from_env({**pg_env, "UBAP_PG_PASSWORD": "not-the-password"})
    with pytest.raises(PostgresError, match="UBAP_PG_PASSWORD") as err:
        postgres.check_instance_database(config)
    assert "not-the-password" not in str(err.value)


def test_port_taken_names_the_port_setting(pg_env):
    # A second cluster on the first one's port: refused before anything is created.
    folder = Path(tempfile.mkdtemp(prefix="ubap-pg2-"))
    folder.chmod(0o711)
    other = Cluster.under(folder)
    try:
        with pytest.raises(PostgresError, match=rf"UBAP_PG_PORT={pg_env['UBAP_PG_PORT']}.*free"):
            postgres.start(PgConfig.from_env(pg_env), other)
        assert not other.initialized
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_unreachable_database_names_the_settings_and_how_to_start_it():
    port = free_port()  # nothing listens there
    env = {"UBAP_PG_HOST": "127.0.0.1", "UBAP_PG_PORT": str(port), "UBAP_PG_PASSWORD": "x"}
    with pytest.raises(PostgresError) as err:
        postgres.check_instance_database(PgConfig.from_env(env))
    message = str(err.value)
    assert f"UBAP_PG_HOST=127.0.0.1 UBAP_PG_PORT={port}" in message
    assert "make pg-start" in message

    checked = run_cli("check", env=env)  # what make up-scale shows before starting Dagster
    assert checked.returncode == 1
    assert f"UBAP_PG_PORT={port}" in checked.stderr and "make pg-start" in checked.stderr


def test_missing_binaries_and_bad_settings_say_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(postgres, "DEBIAN_PG_ROOT", tmp_path)  # no /usr/lib/postgresql/<v>
    monkeypatch.setenv("PATH", str(tmp_path))  # and no pg_ctl on PATH
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        postgres.find_bin_dir()
    with pytest.raises(PostgresError, match="UBAP_PG_PORT='54x'.*between 1 and 65535"):
        PgConfig.from_env({"UBAP_PG_PORT": "54x"})
    with pytest.raises(PostgresError, match="UBAP_PG_PASSWORD is not set"):
        PgConfig.from_env({}).require_password()
