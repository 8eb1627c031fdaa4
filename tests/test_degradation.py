"""Graceful degradation: one failing step never takes the unrelated ones, or the snapshot, down."""

import gc
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource
from streamlit.testing.v1 import AppTest

from ubap_assets.core.daily import build_all_daily
from ubap_assets.defs.models import assets as model_assets
from ubap_assets.defs.models import checks as model_checks
from ubap_assets.defs.predictions import assets as prediction_assets
from ubap_assets.defs.predictions import checks as prediction_checks
from ubap_assets.defs.serving import assets as serving_assets
from ubap_assets.defs.serving.assets import serving_snapshot
from ubap_assets.defs.serving.sensors import publish_after_failure
from ubap_assets.defs.serving.status import check_results, latest_materializations, table_status
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.snapshots import (
    TABLE_STATUS,
    TABLE_STATUS_SCHEMA,
    current_snapshot,
    publish_snapshot,
    read_table_status,
)


def _project_resources(data_dir) -> dict:
    from ubap_assets.defs.resources import resources

    return dict(resources().resources)


def test_a_failed_step_leaves_later_steps_connections_working(data_dir):
    """A step that fails inside `warehouse.get_connection()` leaves its connection in a reference
    cycle (its traceback) until the garbage collector runs; the collector is paused here to make
    that moment deterministic. Later steps, through the IO manager and through the resource,
    must still connect."""

    @dg.asset
    def fails_holding_a_connection(warehouse: DuckDBResource) -> None:
        with warehouse.get_connection() as con:
            con.execute("CREATE TABLE IF NOT EXISTS scratch AS SELECT 1 AS x")
            raise ValueError("single class in the training labels")

    @dg.asset
    def unrelated_frame() -> pl.DataFrame:
        return pl.DataFrame({"day": ["2026-01-05"], "sessions": [3]})

    @dg.asset(deps=[unrelated_frame])
    def unrelated_sql(warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            total = con.execute("SELECT sum(sessions) FROM unrelated_frame").fetchone()[0]
        return dg.MaterializeResult(metadata={"total": int(total)})

    gc.collect()
    gc.disable()
    try:
        result = dg.materialize(
            [fails_holding_a_connection, unrelated_frame, unrelated_sql],
            resources=_project_resources(data_dir),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        gc.enable()
    assert [e.step_key for e in result.get_step_failure_events()] == ["fails_holding_a_connection"]
    assert result.asset_materializations_for_node("unrelated_sql")[0].metadata["total"].value == 3
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT sessions FROM unrelated_frame").fetchone() == (3,)


# --- publishing after a failed run ----------------------------------------------------------


def _snapshot_status(data_dir) -> tuple[dict[str, str], set[str]]:
    snap = current_snapshot(data_dir / "snapshots")
    with duckdb.connect(str(snap.path), read_only=True) as con:
        rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        tables = {name for (name,) in rows}
        return read_table_status(con), tables


def _publish_after(run: dg.ExecuteInProcessResult, instance: dg.DagsterInstance):
    """What the daemon does on a failed run: evaluate the sensor and return its request."""
    failure = next(e for e in run.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="publish_after_failure",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run.run_id),
    ).for_run_failure()
    return publish_after_failure(context)


def test_a_burst_of_failed_runs_publishes_once(data_dir):
    """When a run that publishes is already waiting or running, a failed run gets no publish of
    its own: a queue of failing runs must not pile up one publish_job each."""

    @dg.asset
    def broken() -> None:
        raise RuntimeError("boom")

    @dg.asset(deps=[broken], name=serving_assets.SERVING_SNAPSHOT)
    def publishes() -> None: ...

    instance = dg.DagsterInstance.ephemeral()
    failed = dg.materialize([broken, publishes], instance=instance, raise_on_error=False)
    assert isinstance(_publish_after(failed, instance), dg.RunRequest)

    instance.add_run(
        dg.DagsterRun(job_name="refresh_job", run_id="b" * 36, status=dg.DagsterRunStatus.STARTED)
    )
    skipped = _publish_after(failed, instance)
    assert isinstance(skipped, dg.SkipReason)
    assert "publishes next" in skipped.skip_message and "refresh_job" in skipped.skip_message


def test_planned_check_evaluations_of_a_failed_run_do_not_break_publishing(data_dir, monkeypatch):
    """A run that failed before its checks ran leaves *planned* evaluations (no `passed`) as the
    checks' latest records. Only completed evaluations count, and publishing alone afterwards
    works, with the failed table marked stale."""
    source_up = {"up": True}

    @dg.asset(
        name="users",
        check_specs=[dg.AssetCheckSpec("users_not_empty", asset="users", blocking=True)],
    )
    def users_export() -> dg.MaterializeResult:
        if not source_up["up"]:
            raise dg.Failure(description="the user export is unreachable")
        return dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="users_not_empty", passed=True)]
        )

    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:  # last night's users
        con.execute("CREATE TABLE users AS SELECT 'u1' AS user_id, 'DE' AS country")
    instance = dg.DagsterInstance.ephemeral()
    resources = _project_resources(data_dir)
    assets = [users_export, serving_snapshot]
    night = dg.materialize(assets, resources=resources, instance=instance)
    source_up["up"] = False
    failed = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False)
    assert not failed.success
    assert isinstance(_publish_after(failed, instance), dg.RunRequest)

    # The code location's graph (what a deployed run sees) holds the check; its latest record
    # is the failed run's planned evaluation.
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    checks = check_results(instance, graph)
    assert checks.select("check_name", "passed", "run_id").rows() == [
        ("users_not_empty", True, night.run_id)
    ]

    _as_deployed(monkeypatch, assets, resources)
    publish = dg.materialize(
        assets, selection=[serving_snapshot], resources=resources, instance=instance
    )
    assert publish.success
    status, tables = _snapshot_status(data_dir)
    assert "users" in tables  # last night's users, marked stale
    assert status["users"] == (
        f"users failed in run {failed.run_id[:8]}: the user export is unreachable"
    )


def test_a_table_a_run_built_is_refreshed_for_it_whatever_a_later_run_planned():
    """table_status reads every table's latest materialization at once; a table the publishing
    run built is refreshed for that run, while a publish-only run after a later failed run
    names that failure."""
    fails = {"now": False}

    @dg.asset(name="users")
    def users_export() -> None:
        if fails["now"]:
            raise dg.Failure(description="the user export is unreachable")

    @dg.asset(name="pages")
    def pages_export() -> None: ...

    instance = dg.DagsterInstance.ephemeral()
    built = dg.materialize([users_export, pages_export], instance=instance)
    fails["now"] = True
    failed = dg.materialize([users_export], instance=instance, raise_on_error=False)
    assert not failed.success

    tables, present = ["users", "pages", "events"], {"users", "pages"}
    for_builder = table_status(instance, tables, present, built.run_id)
    assert for_builder.select("table_name", "refreshed").rows() == [
        ("users", True),
        ("pages", True),
        ("events", False),
    ]
    assert for_builder["reason"][2] == "never built: not in the warehouse"
    publish_only = table_status(instance, tables, present, "p" * 36)
    reasons = dict(publish_only.select("table_name", "reason").rows())
    assert reasons["users"] == (
        f"users failed in run {failed.run_id[:8]}: the user export is unreachable"
    )
    assert reasons["pages"] is None
    assert latest_materializations(instance, tables)["users"].run_id == built.run_id


SOURCES = ("users", "pages", "events", "user_personas")


def _load_world(data_dir, world, last_days: int | None = None) -> None:
    """The world's tables; ``last_days``: only the events of its last days (too short a
    history for the models' three label windows)."""
    events = world.events
    if last_days is not None:
        start = events["event_ts"].max().date() - timedelta(days=last_days - 1)
        events = events.filter(pl.col("event_ts").dt.date() >= start)
    frames = {
        "users": world.users,
        "pages": world.pages,
        "events": events,
        "user_personas": world.personas,
    }
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        for table, frame in frames.items():
            con.register("incoming", frame)
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM incoming")
            con.unregister("incoming")
        # the daily tables the models read, rebuilt from these events only
        for table in (t.SESSIONS, t.USER_DAILY, t.PAGE_DAILY, t.USER_PAGE_DAILY):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        build_all_daily(con)


@dg.asset(name=t.DAILY_TRENDS)
def daily_trends_built() -> pl.DataFrame:
    """Stands in for every step unrelated to the models (trends, segments, recommendations)."""
    return pl.DataFrame({"day": [date(2026, 2, 1)], "sessions": [5]})


def _model_graph() -> list:
    return [
        *(dg.AssetSpec(name) for name in SOURCES),
        model_assets.model_training,
        prediction_assets.user_predictions,
        *dg.load_asset_checks_from_modules([model_checks, prediction_checks]),
        daily_trends_built,
        serving_snapshot,
    ]


def _model_resources(data_dir) -> dict:
    return {**_project_resources(data_dir), "model_store": ModelStore(root="")}


@pytest.mark.slow
def test_too_short_a_history_without_earlier_models_still_publishes_the_rest(tiny_world, data_dir):
    _load_world(data_dir, tiny_world, last_days=20)  # cannot hold three label windows
    instance = dg.DagsterInstance.ephemeral()
    resources = _model_resources(data_dir)
    run = dg.materialize(
        _model_graph(), resources=resources, instance=instance, raise_on_error=False
    )
    assert [e.step_key for e in run.get_step_failure_events()] == ["model_training"]
    request = _publish_after(run, instance)
    assert isinstance(request, dg.RunRequest)

    publish = dg.materialize(
        _model_graph(), selection=[serving_snapshot], resources=resources, instance=instance
    )
    assert publish.success
    status, tables = _snapshot_status(data_dir)
    assert t.DAILY_TRENDS in tables and t.DAILY_TRENDS not in status
    for table in (t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES):
        assert "model_training failed" in status[table] and "empty window" in status[table]
    assert "model_training failed: models: empty window" in status[t.USER_PREDICTIONS]


@pytest.mark.slow
def test_too_short_a_history_keeps_the_earlier_models_in_service(tiny_world, data_dir):
    instance = dg.DagsterInstance.ephemeral()
    resources = _model_resources(data_dir)
    _load_world(data_dir, tiny_world)
    assert dg.materialize(_model_graph(), resources=resources, instance=instance).success
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        version = con.execute("SELECT DISTINCT model_version FROM model_cards").fetchall()

    _load_world(data_dir, tiny_world, last_days=20)
    night = dg.materialize(_model_graph(), resources=resources, instance=instance)
    assert night.success  # the snapshot is published by the run itself
    status, tables = _snapshot_status(data_dir)
    assert {t.MODEL_CARDS, t.USER_PREDICTIONS, t.DAILY_TRENDS} <= tables
    built_here = {t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES, t.USER_PREDICTIONS}
    assert {n for n in status if n in built_here | {t.DAILY_TRENDS}} == built_here - {
        t.USER_PREDICTIONS
    }
    assert "empty window" in status[t.MODEL_CARDS]
    assert version[0][0][:8] in status[t.MODEL_CARDS]
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        assert con.execute("SELECT DISTINCT model_version FROM model_cards").fetchall() == version
        scored = con.execute("SELECT DISTINCT model_version FROM user_predictions").fetchall()
    assert scored == version  # re-scored today with the models kept in service


def _as_deployed(monkeypatch, assets: list, resources: dict) -> None:
    """A run launched from the code location sees every check of it; dg.materialize with a
    selection sees only the selected assets'. Give serving_snapshot the code location's graph."""
    graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
    monkeypatch.setattr(serving_assets, "_asset_graph", lambda context: graph)


def test_a_table_whose_blocking_check_failed_is_served_from_the_previous_snapshot(
    data_dir, monkeypatch
):
    rows = {"n": 3}

    @dg.asset(
        name="users",
        check_specs=[dg.AssetCheckSpec("users_not_empty", asset="users", blocking=True)],
    )
    def users_export(warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            con.execute(
                "CREATE OR REPLACE TABLE users AS SELECT 'u' || range AS user_id FROM range(?)",
                [rows["n"]],
            )
        return dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="users_not_empty", passed=rows["n"] > 0)]
        )

    instance = dg.DagsterInstance.ephemeral()
    resources = _project_resources(data_dir)
    assets = [users_export, serving_snapshot]
    assert dg.materialize(assets, resources=resources, instance=instance).success
    rows["n"] = 0  # today's export is empty: the check fails and blocks the snapshot
    failed = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False)
    assert not failed.success
    assert isinstance(_publish_after(failed, instance), dg.RunRequest)

    _as_deployed(monkeypatch, assets, resources)
    assert dg.materialize(
        assets, selection=[serving_snapshot], resources=resources, instance=instance
    ).success
    status, _ = _snapshot_status(data_dir)
    assert status["users"] == "blocking check users_not_empty failed; serving the previous data"
    with duckdb.connect(str(current_snapshot(data_dir / "snapshots").path), read_only=True) as c:
        assert c.execute("SELECT count(*) FROM users").fetchone() == (3,)


# --- the dashboard says which pages show stale data ---------------------------------------------

STALE_REASON = "models not retrained: conversion: single class in the training labels"


def _stale_snapshot(tmp_path) -> Path:
    from test_dashboard import build_snapshot

    base = build_snapshot(tmp_path / "base")
    con = duckdb.connect()
    con.execute(f"ATTACH '{base.path}' AS base (READ_ONLY)")
    names = [*t.SERVING_TABLES, t.SNAPSHOT_META, t.CHECK_RESULTS]
    for name in names:
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM base."{name}"')
    stale = {t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES}
    status = pl.DataFrame(
        [
            {
                "table_name": name,
                "refreshed": name not in stale,
                "reason": STALE_REASON if name in stale else None,
                "materialized_at": datetime(2026, 2, 1, 2),
            }
            for name in t.SERVING_TABLES
        ],
        schema=TABLE_STATUS_SCHEMA,
    )
    target = tmp_path / "snapshots"
    publish_snapshot(con, names, target, "stale-models", extra={TABLE_STATUS: status})
    con.close()
    return target


def _page(name: str) -> AppTest:
    from test_dashboard import APP, PAGE_FILES

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if name != "overview":
        at.switch_page(f"app_pages/{PAGE_FILES[name]}")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_dashboard_warns_on_the_pages_whose_data_was_not_refreshed(tmp_path, monkeypatch):
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(_stale_snapshot(tmp_path)))
    predictions = " ".join(w.value for w in _page("predictions").warning)
    assert f"`model_cards` not refreshed: {STALE_REASON}" in predictions
    assert "`user_predictions`" not in predictions  # re-scored: fresh
    for page in ("overview", "trends"):
        assert not any("not refreshed" in w.value for w in _page(page).warning), page
    pipeline = _page("pipeline")
    listed = " ".join(w.value for w in pipeline.warning)
    served = len(t.SERVING_TABLES)
    assert f"3 of {served} tables were not refreshed" in listed and "`model_curves`" in listed
    assert any(set(d.value.columns) >= {"table_name", "reason"} for d in pipeline.dataframe)


@pytest.mark.slow
def test_a_clean_run_publishes_every_table_as_refreshed(materialized_graph):
    snapshot = current_snapshot(materialized_graph.snapshot_dir)
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        assert read_table_status(con) == {}
        status = con.execute(
            f"SELECT count(*), count(materialized_at) FROM {TABLE_STATUS} WHERE refreshed"
        ).fetchone()
    assert status == (len(t.SERVING_TABLES), len(t.SERVING_TABLES))
