"""The pinned world: nightly runs day after day keep the partitions' keys and the ground truth
aligned with the stored events; file sources take the data's own day range."""

import json
import os
from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.core import synthetic
from ubap_assets.defs.events import settings, world
from ubap_assets.defs.events.assets import behaviour_source, events
from ubap_assets.defs.events.partitions import build_partitions, default_partition_range
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager

USERS, SEED, DAYS = 60, 5, 24
FIRST_TODAY = date(2026, 3, 2)  # the day of the first run; the world starts DAYS before it
NIGHTS = 8


@pytest.fixture
def unpinned(data_dir, monkeypatch):
    """A tiny synthetic world with no UBAP_START_DATE, in its own data directory."""
    monkeypatch.delenv("UBAP_START_DATE", raising=False)
    monkeypatch.setenv("UBAP_USERS", str(USERS))
    monkeypatch.setenv("UBAP_SEED", str(SEED))
    monkeypatch.setenv("UBAP_HISTORY_DAYS", str(DAYS))
    return data_dir


def _set_today(monkeypatch, day: date) -> None:
    monkeypatch.setattr(settings, "today", lambda: day)


def _materialize(data_dir, instance, **partition) -> None:
    database = str(data_dir / "warehouse.duckdb")
    result = dg.materialize(
        [behaviour_source, events],
        resources={
            "io_manager": DuckDBWarehouseIOManager(database=database),
            "warehouse": DuckDBResource(database=database),
        },
        instance=instance,
        **partition,
    )
    assert result.success


def _stored(data_dir) -> tuple[pl.DataFrame, pl.DataFrame]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        stored_events = con.sql("SELECT * FROM events ORDER BY event_id").pl()
        truth = con.sql("SELECT * FROM injected_anomalies ORDER BY anomaly_date").pl()
    return stored_events, truth


def test_nightly_runs_keep_keys_and_ground_truth_aligned(unpinned, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    _set_today(monkeypatch, FIRST_TODAY)
    partitions, resolved = build_partitions()
    start = FIRST_TODAY - timedelta(days=DAYS)
    assert resolved.problems == ()
    assert partitions.get_first_partition_key() == start.isoformat()
    assert json.loads((unpinned / "world.json").read_text())["synthetic"] == {
        "start_date": start.isoformat(),
        "users": USERS,
        "seed": SEED,
        "days": DAYS,
    }
    yesterday = FIRST_TODAY - timedelta(days=1)
    _materialize(
        unpinned,
        instance,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": yesterday.isoformat(),
        },
    )
    spec = synthetic.WorldSpec(users=USERS, days=DAYS, seed=SEED, start_date=start)
    _, before = _stored(unpinned)
    for night in range(1, NIGHTS + 1):
        today = FIRST_TODAY + timedelta(days=night)
        yesterday = today - timedelta(days=1)
        _set_today(monkeypatch, today)
        partitions, resolved = build_partitions()
        # The world does not slide: same first key, one more day at the open end.
        assert resolved.problems == ()
        assert partitions.get_first_partition_key() == start.isoformat()
        assert partitions.end is None
        _materialize(unpinned, instance, partition_key=yesterday.isoformat())

        stored_events, truth = _stored(unpinned)
        # The stored events are exactly the pinned world regenerated over the covered days...
        expected = synthetic.events_between(spec, start, yesterday).sort("event_id")
        assert stored_events.equals(expected)
        # ...and the ground truth is exactly its plan over those days, keeping every earlier row.
        plan = synthetic.anomaly_plan(spec, through=yesterday)
        assert truth.equals(plan)
        assert truth.head(before.height).equals(before)
        before = truth
    # Nights planted anomalies too (the plan goes on past the first history).
    assert before.filter(pl.col("anomaly_date") >= FIRST_TODAY).height >= 1


def test_injected_anomalies_cover_only_the_stored_days(unpinned, monkeypatch):
    _set_today(monkeypatch, FIRST_TODAY)
    partitions, _ = build_partitions()
    start = date.fromisoformat(partitions.get_first_partition_key())
    spec = synthetic.WorldSpec(users=USERS, days=DAYS, seed=SEED, start_date=start)
    far = spec.end_date + timedelta(days=40)
    planted = synthetic.anomaly_plan(spec, through=far)["anomaly_date"].to_list()
    assert planted, "the plan past the first history plants anomalies"
    day = planted[-1]
    _materialize(unpinned, dg.DagsterInstance.ephemeral(), partition_key=day.isoformat())
    stored_events, truth = _stored(unpinned)
    assert set(stored_events["event_ts"].dt.date().unique()) == {day}
    assert truth["anomaly_date"].to_list() == [day]


def test_a_changed_seed_is_an_error_naming_the_variable(unpinned, monkeypatch):
    _set_today(monkeypatch, FIRST_TODAY)
    first, resolved = build_partitions()
    assert resolved.problems == ()
    monkeypatch.setenv("UBAP_SEED", str(SEED + 1))
    _set_today(monkeypatch, FIRST_TODAY + timedelta(days=30))
    again, resolved = build_partitions()
    assert again.get_first_partition_key() == first.get_first_partition_key()
    (problem,) = resolved.problems
    assert problem.startswith(f"UBAP_SEED={SEED + 1}") and "make clean" in problem
    database = str(unpinned / "warehouse.duckdb")
    result = dg.materialize(
        [events],
        partition_key=first.get_first_partition_key(),
        resources={"warehouse": DuckDBResource(database=database)},
        raise_on_error=False,
    )
    assert not result.success
    assert "UBAP_SEED" in result.get_step_failure_events()[0].step_failure_data.error.message


def _write_log(path, days: list[str]) -> None:
    rows = [f"u{i},{day} 10:0{i}:00,page_view" for day in days for i in range(3)]
    path.write_text("user_id,event_ts,event_type\n" + "\n".join(rows) + "\n")


def test_a_historic_log_has_its_own_day_range(data_dir, monkeypatch):
    inbox = data_dir / "logs"
    inbox.mkdir()
    _write_log(inbox / "a.csv", ["2019-10-03", "2019-10-05"])
    _write_log(inbox / "b.csv", ["2019-10-04", "2019-11-02"])
    monkeypatch.setenv("UBAP_SOURCE", str(inbox))
    monkeypatch.delenv("UBAP_START_DATE", raising=False)
    partitions, resolved = build_partitions()
    assert resolved.problems == ()
    # The data's days, not thousands of empty days up to yesterday.
    assert default_partition_range(partitions) == ("2019-10-03", "2019-11-02")
    assert len(partitions.get_partition_keys()) == 31
    cached = json.loads((data_dir / "world.json").read_text())["files"]["files"]
    assert sorted(os.path.basename(p) for p in cached) == ["a.csv", "b.csv"]

    # Loading again reads no file: the days come from the cache keyed by size and mtime.
    def unread(*_):
        raise AssertionError("a file was scanned although it did not change")

    with monkeypatch.context() as patched:
        patched.setattr("ubap_assets.core.ingest.file_days", unread)
        assert default_partition_range(build_partitions()[0]) == ("2019-10-03", "2019-11-02")
    # A changed file is read again; a removed first file does not move the first day.
    _write_log(inbox / "b.csv", ["2019-10-04", "2019-12-24"])
    (inbox / "a.csv").unlink()
    assert default_partition_range(build_partitions()[0]) == ("2019-10-03", "2019-12-24")


def test_a_live_log_keeps_an_open_end(data_dir, monkeypatch):
    inbox = data_dir / "logs"
    inbox.mkdir()
    _set_today(monkeypatch, date(2026, 3, 2))
    _write_log(inbox / "today.csv", ["2026-02-20", "2026-02-28"])
    monkeypatch.setenv("UBAP_SOURCE", str(inbox))
    monkeypatch.delenv("UBAP_START_DATE", raising=False)
    partitions, resolved = build_partitions()
    assert resolved.problems == ()
    assert partitions.get_first_partition_key() == "2026-02-20"
    assert partitions.end is None
    assert world.current_world(record=False).world.last_day is None
