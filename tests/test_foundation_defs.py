"""The code location loads, the way `dagster dev` and `dg` load it."""

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from ubap_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]

STAGE_GROUPS = {
    "events",
    "features",
    "segments",
    "models",
    "predictions",
    "trends",
    "anomalies",
    "recommendations",
    "summary",
    "serving",
    "ground_truth",  # what only the generator knows, read only by the scoring assets
}


def test_definitions_load_with_groups_owners_and_docs():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {"events", "users", "pages", "user_personas", "injected_anomalies"} <= {
        k.to_user_string() for k in keys
    }
    for key in keys:
        assert graph.get(key).group_name in STAGE_GROUPS, key.to_user_string()
    for key in keys:
        node = graph.get(key)
        assert node.owners, f"{key.to_user_string()} has no owner"
        assert node.description, f"{key.to_user_string()} has no docstring"
        assert node.kinds, f"{key.to_user_string()} has no kinds"


def test_every_asset_is_a_contract_table_or_the_snapshot():
    from ubap_assets.warehouse import tables

    contract = {v for k, v in vars(tables).items() if k.isupper() and isinstance(v, str)}
    keys = {k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()}
    assert keys - contract <= {"serving_snapshot"}, keys - contract


def _tick(definitions, name: str, when: datetime):
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=definitions.get_repository_def()
    )
    return definitions.resolve_schedule_def(name).evaluate_tick(context)


def test_nightly_schedule_refreshes_yesterday_and_the_day_before_without_retraining():
    definitions = defs()
    schedule = definitions.resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.job_name == "nightly_job"
    (request,) = _tick(definitions, "nightly_refresh", datetime(2026, 2, 11, 2, 0)).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-02-09"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-02-10"
    skipped = _tick(definitions, "nightly_retrain", datetime(2026, 2, 11, 2, 0))
    assert not skipped.run_requests
    assert "next after 2026-02-16" in skipped.skip_message


def test_the_first_night_of_a_training_period_retrains_instead():
    """Weekly by default: the night after a Monday runs refresh_job (models and the
    recommender's tuning retrained up to that Monday, once Sunday's sessions are complete);
    nightly_refresh skips that night."""
    definitions = defs()
    when = datetime(2026, 2, 17, 2, 0)  # the night after Monday 16 February
    (request,) = _tick(definitions, "nightly_retrain", when).run_requests
    assert definitions.resolve_schedule_def("nightly_retrain").job_name == "refresh_job"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-02-16"
    assert "training period" in _tick(definitions, "nightly_refresh", when).skip_message


def test_nightly_job_leaves_out_only_the_retrained_assets():
    from ubap_assets.defs.schedules import RETRAINED

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    nightly = definitions.resolve_job_def("nightly_job").asset_layer.executable_asset_keys
    everything = definitions.resolve_job_def("refresh_job").asset_layer.executable_asset_keys
    assert everything - nightly == RETRAINED.resolve(graph)
    assert dg.AssetKey("user_predictions") in nightly


def test_nightly_schedule_skips_a_day_without_a_partition():
    """A historic log's partitions end at its last day: the nightly tick skips, naming the range,
    instead of requesting a partition that does not exist."""
    definitions = defs()
    result = _tick(definitions, "nightly_refresh", datetime(2026, 1, 2, 2, 0))  # before day one
    assert not result.run_requests
    assert "no event partition for 2026-01-01" in result.skip_message


@pytest.mark.slow
def test_dg_check_defs_passes():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


_LOAD_AND_MATERIALIZE = """
import sys, tempfile
import dagster as dg
from dagster_duckdb import DuckDBResource
from ubap_assets.definitions import defs
from ubap_assets.defs.events.assets import events
from ubap_assets.defs.events.partitions import default_partition_range

definitions = defs()
definitions.resolve_job_def("refresh_job")
definitions.resolve_schedule_def("nightly_refresh")
print("LOADED", flush=True)
if sys.argv[1] == "materialize":
    db = tempfile.mkdtemp() + "/w.duckdb"
    result = dg.materialize(
        [events], partition_key=default_partition_range()[1],
        resources={"warehouse": DuckDBResource(database=db)}, raise_on_error=False,
    )
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    print("FAILED:", failure.replace("\\n", " "))
"""


@pytest.mark.parametrize(
    "variable, value, materialize",
    [
        ("UBAP_HISTORY_DAYS", "0", True),
        ("UBAP_START_DATE", "garbage", True),
        ("UBAP_USERS", "many", True),
        ("UBAP_SEED", "-1", True),
        ("UBAP_MAX_REJECT_SHARE", "2", True),
        ("UBAP_NIGHTLY_CRON", "nightly", False),
    ],
)
def test_a_bad_setting_loads_and_fails_the_run_naming_the_variable(
    tmp_path, monkeypatch, variable, value, materialize
):
    """The code location still loads (a safe fallback), logs one line naming the variable and
    the fix, and a run of events fails with the same message."""
    env = {**os.environ, "UBAP_DATA_DIR": str(tmp_path), variable: value}
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_MATERIALIZE, "materialize" if materialize else "load"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "LOADED" in result.stdout, output
    logged = [line for line in output.splitlines() if "ubap configuration error" in line]
    assert len(logged) == 1 and f"{variable}={value!r}" in logged[0], output
    if materialize:
        (failed,) = [line for line in result.stdout.splitlines() if line.startswith("FAILED:")]
        assert f"{variable}={value!r}" in failed and "Invalid configuration" in failed
    else:
        from ubap_assets.defs.schedules import nightly_schedules

        monkeypatch.setenv(variable, value)
        for schedule in nightly_schedules():
            assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
            assert variable in schedule.description


def test_one_settings_model_reads_every_variable_and_never_raises(monkeypatch, tmp_path):
    from ubap_assets.settings import Settings, current_settings, settings_problems
    from ubap_assets.warehouse.paths import snapshot_dir, warehouse_path

    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UBAP_USERS", "many")
    monkeypatch.setenv("GEMINI_API_KEY", "key")
    assert warehouse_path() == tmp_path / "warehouse.duckdb"
    assert snapshot_dir() == tmp_path / "snapshots"
    assert current_settings().users == 20_000 and current_settings().gemini_api_key == "key"
    (problem,) = settings_problems()
    assert problem.startswith("UBAP_USERS='many' is invalid")
    given = Settings.from_environ({"UBAP_SEED": "3"})
    assert given.seed == 3 and given.data_dir is None and given.gemini_api_key == ""
