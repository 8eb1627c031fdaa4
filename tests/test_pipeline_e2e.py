"""The whole graph, end to end, on a tiny synthetic world: every table filled, checks pass,
a serving snapshot published with this run's check status."""

import dagster as dg
import duckdb
import pytest

from tests.conftest import TEST_DAYS
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.snapshots import current_snapshot

# Empty by design on synthetic data (nothing is rejected), or legitimately empty when nothing
# was flagged in the latest week (anomaly_history always has rows).
MAY_BE_EMPTY = {tables.EVENT_REJECTS, tables.ANOMALIES}


def _table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_whole_graph_materializes(materialized_graph):
    result = materialized_graph.result
    failures = [e.step_key for e in result.get_step_failure_events()]
    assert result.success, f"failed steps: {failures}"

    failed_checks = [
        f"{c.asset_key.to_user_string()}:{c.check_name}"
        for c in result.get_asset_check_evaluations()
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not failed_checks, failed_checks

    warehouse = materialized_graph.data_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        missing = set(tables.SERVING_TABLES) - _table_names(con)
        assert not missing, f"tables never written: {sorted(missing)}"
        for table in tables.SERVING_TABLES:
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            assert rows > 0 or table in MAY_BE_EMPTY, f"{table} is empty"
        days = con.execute("SELECT count(DISTINCT event_ts::DATE) FROM events").fetchone()[0]
        assert days == TEST_DAYS


@pytest.mark.slow
def test_snapshot_holds_every_serving_table_and_this_runs_checks(materialized_graph):
    snapshot = current_snapshot(materialized_graph.snapshot_dir)
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        assert set(tables.SERVING_TABLES) <= _table_names(con)
        # serving_snapshot runs after every ready step (lowest priority), so all checks, the
        # non-blocking warnings too, ran before it: the published status is this run's.
        runs = con.execute(f"SELECT DISTINCT run_id FROM {tables.CHECK_RESULTS}").fetchall()
        checks = con.execute(f"SELECT count(*) FROM {tables.CHECK_RESULTS}").fetchone()[0]
    assert runs == [(materialized_graph.result.run_id,)]
    graph = materialized_graph.job.asset_layer.asset_graph
    assert checks == len(list(graph.asset_check_keys))


# Columns only the generator's ground truth has; none may reach a served table.
GROUND_TRUTH_COLUMNS = {"persona", "purchase_propensity_14d", "favourite_category"}


@pytest.mark.slow
def test_ground_truth_stays_out_of_the_snapshot(materialized_graph):
    graph = materialized_graph.job.asset_layer.asset_graph
    truth = {tables.USER_PERSONAS, tables.INJECTED_ANOMALIES}
    for name in truth:
        assert graph.get(dg.AssetKey(name)).group_name == "ground_truth"
    snapshot = current_snapshot(materialized_graph.snapshot_dir)
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        assert not truth & _table_names(con)
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
        ).fetchall()
        persona_ari = con.execute(f"SELECT persona_ari FROM {tables.SEGMENT_SCORES}").fetchone()
    leaked = [(t, c) for t, c in columns if c in GROUND_TRUTH_COLUMNS]
    assert not leaked, leaked
    assert persona_ari[0] is not None  # scored on the synthetic world, from the truth


@pytest.mark.slow
def test_a_nightly_run_refreshes_one_day_and_publishes_a_new_snapshot(
    materialized_graph, tmp_path, monkeypatch
):
    import shutil
    from datetime import timedelta

    from tests.conftest import TEST_START
    from ubap_assets.definitions import defs

    data = tmp_path / "data"
    shutil.copytree(materialized_graph.data_dir, data)
    monkeypatch.setenv("UBAP_DATA_DIR", str(data))
    before = current_snapshot(data / "snapshots")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        events_before = con.execute("SELECT count(*) FROM events").fetchone()[0]

    last_day = (TEST_START + timedelta(days=TEST_DAYS - 1)).isoformat()
    result = (
        defs()
        .resolve_job_def("refresh_job")
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key=last_day, raise_on_error=False
        )
    )
    assert result.success, [e.step_key for e in result.get_step_failure_events()]

    after = current_snapshot(data / "snapshots")
    assert after.snapshot_id != before.snapshot_id
    assert before.path.exists()  # the previous snapshot stays on disk for readers mid-request
    # The snapshot keeps only each user's recent events; the warehouse holds them all.
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == events_before
