"""The events assets through Dagster: partitions are idempotent, bad config names the field."""

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.defs.events.assets import behaviour_source, events
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager

DAY = "2026-01-20"


def _resources(path):
    return {
        "io_manager": DuckDBWarehouseIOManager(database=str(path)),
        "warehouse": DuckDBResource(database=str(path)),
    }


def _rows(path, day):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT * FROM events WHERE event_ts::DATE = ?::DATE ORDER BY event_id", [day]
        ).fetchall()


def test_materializing_a_day_twice_gives_the_same_rows(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    first = dg.materialize([events], partition_key=DAY, resources=_resources(warehouse))
    assert first.success
    checks = first.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    rows = _rows(warehouse, DAY)
    assert rows
    neighbour = dg.materialize(
        [events], partition_key="2026-01-21", resources=_resources(warehouse)
    )
    assert neighbour.success
    again = dg.materialize([events], partition_key=DAY, resources=_resources(warehouse))
    assert again.success
    assert _rows(warehouse, DAY) == rows
    with duckdb.connect(str(warehouse), read_only=True) as con:
        total, ids = con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    assert total == ids == len(rows) + len(_rows(warehouse, "2026-01-21"))


def test_source_tables_materialize(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    result = dg.materialize([behaviour_source], resources=_resources(warehouse))
    assert result.success
    with duckdb.connect(str(warehouse), read_only=True) as con:
        users = con.execute("SELECT count(*) FROM users").fetchone()[0]
        personas = con.execute("SELECT count(*) FROM user_personas").fetchone()[0]
        rejects = con.execute("SELECT count(*) FROM event_rejects").fetchone()[0]
    assert users == personas == 800
    assert rejects == 0


@pytest.mark.parametrize(
    "config, field",
    [
        ({"users": -5}, "users"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"source": "no/such/folder"}, "UBAP_SOURCE"),
    ],
)
def test_invalid_config_fails_the_run_naming_the_field(tmp_path, config, field):
    result = dg.materialize(
        [events],
        partition_key=DAY,
        resources=_resources(tmp_path / "w.duckdb"),
        run_config={"ops": {"events": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert field in failure.step_failure_data.error.message


def test_event_ids_must_be_unique_across_days_not_only_in_the_window():
    from datetime import datetime

    from ubap_assets.defs.events.checks import event_check_results

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (event_id VARCHAR, user_id VARCHAR, session_id VARCHAR, "
        "event_ts TIMESTAMP, event_type VARCHAR, page_id VARCHAR, device VARCHAR, "
        "traffic_source VARCHAR, revenue DOUBLE)"
    )
    row = "(?, 'u', ?, ?, 'page_view', 'p', 'mobile', 'seo', NULL)"
    con.execute(
        f"INSERT INTO events VALUES {row}, {row}, {row}",
        ["e1", "s1", datetime(2026, 1, 5, 9), "e2", "s2", datetime(2026, 1, 6, 9)]
        + ["e1", "s3", datetime(2026, 1, 6, 10)],
    )
    day = (datetime(2026, 1, 6), datetime(2026, 1, 7))
    (unique,) = [r for r in event_check_results(con, *day, 0) if r.check_name == "event_ids_unique"]
    assert not unique.passed and unique.metadata["other_days"].value == "1"
    con.execute("DELETE FROM events WHERE session_id = 's1'")
    (unique,) = [r for r in event_check_results(con, *day, 0) if r.check_name == "event_ids_unique"]
    assert unique.passed
    # a repeat inside the window is counted exactly (hashes first, then the ids)
    con.execute(f"INSERT INTO events VALUES {row}", ["e2", "s4", datetime(2026, 1, 6, 11)])
    (unique,) = [r for r in event_check_results(con, *day, 0) if r.check_name == "event_ids_unique"]
    assert not unique.passed and unique.metadata["in_window"].value == "1"
    # the same answers when the ids are checked in slices of their hash (a long backfill)
    from ubap_assets.defs.events import checks

    slices, checks.ROWS_PER_PASS = checks.ROWS_PER_PASS, 1
    try:
        con.execute(f"INSERT INTO events VALUES {row}", ["e2", "s5", datetime(2026, 1, 5, 11)])
        results = {r.check_name: r for r in event_check_results(con, *day, 0)}
    finally:
        checks.ROWS_PER_PASS = slices
    unique = results["event_ids_unique"]
    assert unique.metadata["in_window"].value == "1"
    assert unique.metadata["other_days"].value == "1"  # e2 on the 5th
    assert results["sessions_well_formed"].passed


def test_planted_anomalies_name_only_days_with_stored_or_generated_events(tmp_path):
    from datetime import date, datetime, timedelta

    from ubap_assets.core.synthetic import WorldSpec, anomaly_plan
    from ubap_assets.defs.events.assets import planted_anomalies

    spec = WorldSpec(users=50, days=90, start_date=date(2026, 8, 1))
    plan = anomaly_plan(spec)
    planted = sorted(set(plan["anomaly_date"].to_list()))
    assert len(planted) >= 3
    gap, generated = planted[0], planted[-1]  # no stored event; only this run's events
    stored = [
        day
        for day in (spec.start_date + timedelta(days=i) for i in range(spec.days))
        if day < generated and day != gap
    ]
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE events (event_id VARCHAR, event_ts TIMESTAMP)")
        con.executemany(
            "INSERT INTO events VALUES (?, ?)",
            [(f"e{i}", datetime.combine(day, datetime.min.time())) for i, day in enumerate(stored)],
        )
    found, covered = planted_anomalies(spec, [generated], DuckDBResource(database=str(path)))
    expected = plan.filter(plan["anomaly_date"].is_in([d for d in planted if d != gap]))
    assert found.sort("anomaly_date").equals(expected.sort("anomaly_date"))
    assert gap not in found["anomaly_date"].to_list()
    assert covered == f"{spec.start_date} .. {generated}"
