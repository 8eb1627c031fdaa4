"""Incremental is an optimisation, never a different answer: the warehouse after a full
materialization of the first days followed by one scheduled run per later night (the nightly
job on most nights, the retraining job on the first night of a training period) equals the
warehouse of one full materialization of all the days (the session's ``materialized_graph``)."""

import json
import os
import re
from datetime import datetime, time, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import TEST_DAYS, TEST_START

NIGHTS = 7  # the last week comes in night by night; its first night starts a training period
# Columns that name the run that wrote a row, not what the data say; run ids quoted in a text.
RUN_COLUMNS = {"model_version", "created_at", "artifact_path", "run_id", "generated_at"}
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _rounded(value):
    """JSON numbers to 12 significant digits (a float's last bits may differ, as in columns)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Text as the data say it: run ids masked, JSON numbers rounded like float columns."""
    texts = [c for c, kind in frame.schema.items() if kind == pl.String]
    return frame.with_columns(
        pl.col(c).map_elements(
            (lambda t: json.dumps(_rounded(json.loads(t)), sort_keys=True))
            if c.endswith("_json")
            else (lambda t: RUN_ID.sub("<run>", t)),
            return_dtype=pl.String,
        )
        for c in texts
    )


def ordered(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    columns = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        if name not in RUN_COLUMNS
    ]
    selected = ", ".join(f'"{c}"' for c in columns)
    return con.execute(f'SELECT {selected} FROM main."{table}" ORDER BY ALL').pl()


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {name for (name,) in rows}


def differences(full: Path, incremental: Path) -> dict[str, str]:
    """Each table whose rows differ (beyond 1e-9 relative on floats), with the first difference."""
    found: dict[str, str] = {}
    with (
        duckdb.connect(str(full), read_only=True) as a,
        duckdb.connect(str(incremental), read_only=True) as b,
    ):
        names = tables(a)
        if names != tables(b):
            found["(tables)"] = (
                f"only in full: {names - tables(b)}; only nightly: {tables(b) - names}"
            )
        for table in sorted(names & tables(b)):
            try:
                assert_frame_equal(
                    comparable(ordered(a, table)),
                    comparable(ordered(b, table)),
                    check_exact=False,
                    rel_tol=1e-9,
                    abs_tol=1e-12,
                )
            except AssertionError as err:
                found[table] = str(err).splitlines()[0][:300]
    return found


def run_night(definitions, instance, day) -> str:
    """The scheduled run of the night after ``day`` (whichever schedule requests it)."""
    when = datetime.combine(day + timedelta(days=1), time(2, 0))
    for name in ("nightly_refresh", "nightly_retrain"):
        context = dg.build_schedule_context(
            scheduled_execution_time=when,
            instance=instance,
            repository_def=definitions.get_repository_def(),
        )
        schedule = definitions.resolve_schedule_def(name)
        requests = schedule.evaluate_tick(context).run_requests
        if requests:
            (request,) = requests
            result = definitions.resolve_job_def(schedule.job_name).execute_in_process(
                instance=instance, tags=request.tags, raise_on_error=False
            )
            failed = [e.step_key for e in result.get_step_failure_events()]
            assert result.success, f"night after {day}: {schedule.job_name} failed at {failed}"
            return schedule.job_name
    raise AssertionError(f"no schedule requested a run for the night after {day}")


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
        run_night(definitions, instance, first_nightly + timedelta(days=i)) for i in range(NIGHTS)
    ]
    # Weekly cadence: the night after Monday retrains, the six after it only score.
    assert jobs == ["refresh_job"] + ["nightly_job"] * (NIGHTS - 1), jobs
    assert os.environ["UBAP_DATA_DIR"] == str(tmp_path)

    found = differences(
        materialized_graph.data_dir / "warehouse.duckdb", tmp_path / "warehouse.duckdb"
    )
    assert not found, "\n".join(f"{table}: {why}" for table, why in found.items())
