"""Incremental is an optimisation, never a different answer: the warehouse after a full
materialization of the first days followed by one scheduled run per later night (the nightly
job on most nights, the retraining job on the first night of a training period) equals the
warehouse of one full materialization of all the days (the session's ``materialized_graph``)."""

import os
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from tests.conftest import TEST_DAYS, TEST_START
from tests.nights import run_night
from tests.warehouse_diff import differences

NIGHTS = 7  # the last week comes in night by night; its first night starts a training period


@pytest.mark.slow
def test_nightly_runs_equal_one_full_materialization(materialized_graph, tmp_path, monkeypatch):
    from ubap_assets.definitions import defs

    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    last = TEST_START + timedelta(days=TEST_DAYS - 1)
    first_nightly = last - timedelta(days=NIGHTS - 1)
    result = definitions.resolve_job_def("refresh_job").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": TEST_START.isoformat(),
            "dagster/asset_partition_range_end": (first_nightly - timedelta(days=1)).isoformat(),
        },
        raise_on_error=False,
    )
    assert result.success, [e.step_key for e in result.get_step_failure_events()]
    jobs = [
        run_night(definitions, instance, first_nightly + timedelta(days=i))[0]
        for i in range(NIGHTS)
    ]
    # Weekly cadence: the night after Monday retrains, the six after it only score.
    assert jobs == ["refresh_job"] + ["nightly_job"] * (NIGHTS - 1), jobs
    assert os.environ["UBAP_DATA_DIR"] == str(tmp_path)

    found = differences(
        materialized_graph.data_dir / "warehouse.duckdb", tmp_path / "warehouse.duckdb"
    )
    assert not found, "\n".join(f"{table}: {why}" for table, why in found.items())

    # The segment tables' window (shorter than the world, tests/conftest.py) slid across the
    # nights and the segment series of the detector followed it.
    window = int(os.environ["UBAP_SEGMENT_TREND_DAYS"])
    assert window < TEST_DAYS
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        firsts = [
            con.execute(sql).fetchone()[0]
            for sql in (
                "SELECT min(day) FROM segment_trends",
                "SELECT min(day) FROM funnel_segments",
                "SELECT min(day) FROM anomaly_history WHERE dimension = 'segment'",
                "SELECT min(day) FROM anomaly_state WHERE dimension = 'segment'",
            )
        ]
    assert firsts == [last - timedelta(days=window - 1)] * 4, firsts
