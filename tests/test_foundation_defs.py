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


def test_nightly_schedule_targets_yesterday():
    definitions = defs()
    schedule = definitions.resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 2, 10, 2, 0),
        repository_def=definitions.get_repository_def(),
    )
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-02-09"


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
