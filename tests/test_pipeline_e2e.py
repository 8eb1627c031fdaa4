"""The whole graph, end to end, on a tiny synthetic world: every table filled, checks pass,
a serving snapshot published."""

import dagster as dg
import duckdb
import pytest

from tests.conftest import TEST_DAYS, TEST_START
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.paths import warehouse_path
from ubap_assets.warehouse.snapshots import current_snapshot

# Empty by design on synthetic data (nothing is rejected), or legitimately empty when nothing
# was flagged in the latest week (anomaly_history always has rows).
MAY_BE_EMPTY = {tables.EVENT_REJECTS, tables.ANOMALIES}


@pytest.mark.slow
def test_whole_graph_materializes(data_dir):
    from datetime import timedelta

    from ubap_assets.definitions import defs

    last = TEST_START + timedelta(days=TEST_DAYS - 1)
    job = defs().resolve_job_def("refresh_job")
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": TEST_START.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        raise_on_error=False,
    )
    failures = [e.step_key for e in result.get_step_failure_events()]
    assert result.success, f"failed steps: {failures}"

    failed_checks = [
        f"{c.asset_key.to_user_string()}:{c.check_name}"
        for c in result.get_asset_check_evaluations()
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not failed_checks, failed_checks

    assert warehouse_path().is_relative_to(data_dir)
    with duckdb.connect(str(warehouse_path()), read_only=True) as con:
        present = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        missing = set(tables.SERVING_TABLES) - present
        assert not missing, f"tables never written: {sorted(missing)}"
        for table in tables.SERVING_TABLES:
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            assert rows > 0 or table in MAY_BE_EMPTY, f"{table} is empty"
        days = con.execute("SELECT count(DISTINCT event_ts::DATE) FROM events").fetchone()[0]
        assert days == TEST_DAYS

    snapshot = current_snapshot(data_dir / "snapshots")
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        published = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert set(tables.SERVING_TABLES) <= published

    # Every check ran before the snapshot (warn-level ones are blocking too, for order), so the
    # published check status is this run's, not the previous run's.
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        runs = con.execute(f"SELECT DISTINCT run_id FROM {tables.CHECK_RESULTS}").fetchall()
        checks = con.execute(f"SELECT count(*) FROM {tables.CHECK_RESULTS}").fetchone()[0]
    assert runs == [(result.run_id,)]
    assert checks == len(list(job.asset_layer.asset_graph.asset_check_keys))
