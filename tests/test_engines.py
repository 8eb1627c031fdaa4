"""The Spark engine against the DuckDB engine: the same day tables from the same events.

Marked ``scale``: it starts a local Spark (Java 17, pyspark; `make install-scale`).
"""

import math
import shutil
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest

from ubap_assets.core import daily, trends
from ubap_assets.core.synthetic import WorldSpec, generate_world
from ubap_assets.engines import lake
from ubap_assets.warehouse import tables

pytestmark = pytest.mark.scale

DAY_TABLES = {
    tables.SESSIONS: ("session_id",),
    tables.USER_DAILY: ("day", "user_id"),
    tables.PAGE_DAILY: ("day", "page_id"),
    tables.USER_PAGE_DAILY: ("day", "user_id", "page_id", "event_type"),
}
RELATIVE = 1e-9


@pytest.fixture(scope="module")
def spark():
    from ubap_assets.engines.spark import spark_session

    return spark_session()


@pytest.fixture(scope="module")
def engines(tmp_path_factory, spark):
    """A 14-day world built by both engines: (DuckDB warehouse, Spark's lake folder)."""
    from ubap_assets.engines.spark import SparkDays

    world = generate_world(WorldSpec(users=300, days=14, seed=5, start_date=date(2026, 3, 2)))
    folder = tmp_path_factory.mktemp("lake")
    con = both_engines_input(world, folder)
    daily.build_all_daily(SparkDays(spark, folder))
    return con, folder


def both_engines_input(world, folder) -> duckdb.DuckDBPyConnection:
    """``world``'s pages and events in a DuckDB warehouse with its day tables built, and the
    same events and page catalogue in the lake at ``folder`` (what Spark starts from)."""
    con = duckdb.connect()
    for table, frame in (("pages", world.pages), ("events", world.events)):
        con.register("incoming", frame)
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
        con.unregister("incoming")
    daily.build_all_daily(con)
    start, end = daily.events_span(con)
    lake.write_days(folder, tables.EVENTS, [world.events], "event_ts", start, end)
    lake.write_mirror(folder, tables.PAGES, world.pages)
    return con


def _rows(con: duckdb.DuckDBPyConnection, sql: str, order: tuple[str, ...]) -> pl.DataFrame:
    return con.execute(f"SELECT * FROM ({sql}) ORDER BY {', '.join(order)}").pl()


def _assert_same(left: pl.DataFrame, right: pl.DataFrame, table: str) -> None:
    assert left.columns == right.columns, table
    assert left.schema == right.schema, table
    assert left.height == right.height > 0, table
    for name, kind in left.schema.items():
        a, b = left[name].to_list(), right[name].to_list()
        if kind == pl.Float64:
            bad = [
                (x, y)
                for x, y in zip(a, b, strict=True)
                if not math.isclose(x, y, rel_tol=RELATIVE, abs_tol=1e-12)
            ]
            assert not bad, f"{table}.{name}: {bad[:3]}"
        else:
            assert a == b, f"{table}.{name} differs"


@pytest.mark.parametrize("table", list(DAY_TABLES))
def test_spark_day_table_equals_duckdb(engines, table):
    con, folder = engines
    expected = _rows(con, f"SELECT * FROM {table}", DAY_TABLES[table])
    actual = _rows(con, lake.scan_sql(folder, table), DAY_TABLES[table])
    _assert_same(expected, actual, table)


def test_spark_rewrites_one_day_and_keeps_the_rest(engines, spark):
    """Re-running a day replaces that day's folder only; the table stays equal to DuckDB's."""
    from ubap_assets.engines.spark import SparkDays

    con, folder = engines
    days = lake.days_present(folder, tables.SESSIONS)
    day = days[len(days) // 2]
    before = {
        d: sorted(p.name for p in lake.day_dir(folder, tables.SESSIONS, d).iterdir()) for d in days
    }
    written = daily.build_sessions(SparkDays(spark, folder), day, day + timedelta(days=1))
    expected = con.execute("SELECT count(*) FROM sessions WHERE day = ?", [day]).fetchone()[0]
    assert written == expected > 0
    after = {
        d: sorted(p.name for p in lake.day_dir(folder, tables.SESSIONS, d).iterdir()) for d in days
    }
    assert {d for d in days if before[d] != after[d]} == {day}
    order = DAY_TABLES[tables.SESSIONS]
    _assert_same(
        _rows(con, "SELECT * FROM sessions", order),
        _rows(con, lake.scan_sql(folder, tables.SESSIONS), order),
        tables.SESSIONS,
    )


def test_a_lake_table_of_an_older_layout_is_rebuilt_only_whole(engines, spark, tmp_path):
    """After an upgrade that changed a day table's columns, a run over some days must not write
    new-layout days beside the older ones (a reader of the folder would misread one or the
    other): it fails with the fix, and a run over every day rebuilds the table."""
    from ubap_assets.engines.spark import SparkDays

    _, built = engines
    folder = tmp_path / "lake"
    shutil.copytree(built, folder)
    days = lake.days_present(folder, tables.SESSIONS)
    for day in days:  # what an older version, without checkout_starts, left
        for file in lake.day_dir(folder, tables.SESSIONS, day).glob("*.parquet"):
            pl.read_parquet(file).drop("checkout_starts").write_parquet(file)
            file.with_name(f".{file.name}.crc").unlink()  # Spark's checksum of the old bytes
    before = {file: file.stat().st_mtime_ns for file in folder.rglob("*.parquet")}

    last = days[-1]
    with pytest.raises(daily.OlderLayoutError, match=r"sessions was written by an older") as err:
        daily.build_sessions(SparkDays(spark, folder), last, last + timedelta(days=1))
    assert f"{len(days) - 1} day(s) of Parquet outside" in str(err.value)
    assert "Rematerialize every day of sessions" in str(err.value)
    assert {file: file.stat().st_mtime_ns for file in folder.rglob("*.parquet")} == before

    daily.build_sessions(SparkDays(spark, folder), days[0], last + timedelta(days=1))
    columns = [name for name in daily.SESSIONS_COLUMNS if name != lake.PARTITION]
    assert {tuple(lake.day_columns(folder, tables.SESSIONS, day)) for day in days} == {
        tuple(columns)
    }


def test_warehouse_views_read_the_lake(engines, tmp_path):
    _, folder = engines
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    attached = lake.attach_views(con, folder)
    assert set(attached) == set(lake.LAKE_TABLES)
    kinds = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'sessions'"
        ).fetchall()
    )
    assert kinds["day"] == "DATE" and kinds["session_start"] == "TIMESTAMP"
    assert "day" not in {r[0] for r in con.execute("DESCRIBE events").fetchall()}


def test_a_duckdb_table_where_a_view_belongs_is_a_clear_error(engines, tmp_path):
    _, folder = engines
    con = duckdb.connect()
    con.execute("CREATE TABLE sessions (x INTEGER)")
    with pytest.raises(lake.LakeConflictError, match="UBAP_DATA_DIR"):
        lake.attach_views(con, folder)


@pytest.mark.slow
def test_whole_graph_on_spark_equals_the_duckdb_graph(materialized_graph, tmp_path, monkeypatch):
    """UBAP_ENGINE=spark over the tiny world: every warehouse table (the lake's as views) equals
    the DuckDB engine's materialization of the same world, and the snapshot is published."""
    import dagster as dg

    from tests.conftest import TEST_DAYS, TEST_START
    from tests.warehouse_diff import differences
    from ubap_assets.definitions import defs

    monkeypatch.setenv("UBAP_ENGINE", "spark")
    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    last = TEST_START + timedelta(days=TEST_DAYS - 1)
    result = (
        defs()
        .resolve_job_def("refresh_job")
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": TEST_START.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
            raise_on_error=False,
        )
    )
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    for table in lake.LAKE_TABLES:
        assert lake.days_present(tmp_path / "lake", table)[-1] == last, table
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        views = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
            ).fetchall()
        }
    assert views == set(lake.LAKE_TABLES)
    assert differences(materialized_graph.data_dir / "warehouse.duckdb", warehouse) == {}
    assert any((tmp_path / "snapshots").glob("*.duckdb"))


# The trend stages on Spark (engines/spark_connection.py) against the same functions on DuckDB.
TREND_WINDOW = (date(2026, 3, 4), date(2026, 3, 9))
TREND_STAGES = {
    "daily_trends": lambda con: trends.daily_trends(con, *TREND_WINDOW),
    "funnel_daily": lambda con: trends.funnel_daily(con, *TREND_WINDOW),
    "funnel_dimensions": lambda con: trends.funnel_dimensions(con, *TREND_WINDOW),
    "retention_cohorts": trends.retention_cohorts,
    "lifecycle_weekly": trends.lifecycle_weekly,
    "weekly_trends": trends.weekly_trends,
}
# Recomputed from a day of the last week on, the earlier weeks read back from the stored table.
TREND_TAILS = {
    tables.WEEKLY_TRENDS: trends.weekly_trends,
    tables.LIFECYCLE_WEEKLY: trends.lifecycle_weekly,
}


@pytest.mark.parametrize("stage", list(TREND_STAGES))
def test_trend_stage_on_spark_equals_duckdb(engines, spark, stage):
    from ubap_assets.engines.spark_connection import SparkConnection

    con, folder = engines
    compute = TREND_STAGES[stage]
    _assert_same(compute(con), compute(SparkConnection(spark, folder)), stage)


@pytest.mark.parametrize("table", list(TREND_TAILS))
def test_weekly_tail_on_spark_reads_back_the_stored_weeks(engines, spark, table):
    from ubap_assets.engines.spark_connection import SparkConnection

    con, folder = engines
    compute = TREND_TAILS[table]
    stored = compute(con)
    # The last week is recomputed, the ones before it read back from the stored table.
    since = stored["week_start"].max() + timedelta(days=7)
    assert stored["week_start"].min() < since - timedelta(days=since.weekday() + 7)
    con.register("incoming", stored)
    con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM incoming")
    con.unregister("incoming")
    try:
        expected = compute(con, since=since)
    finally:
        con.execute(f"DROP TABLE temp.{table}")
    on_spark = SparkConnection(spark, folder, shipped={table: stored})
    _assert_same(expected, compute(on_spark, since=since), table)
    _assert_same(stored, compute(on_spark, since=since), table)


def test_spark_connection_answers_the_catalogue_from_what_spark_reads(engines, spark):
    from ubap_assets.engines.spark_connection import SparkConnection
    from ubap_assets.warehouse.introspect import table_exists

    _, folder = engines
    shipped = pl.DataFrame({"week_start": [date(2026, 3, 2)], "users": [3]})
    on_spark = SparkConnection(spark, folder, shipped={"small": shipped})
    assert table_exists(on_spark, tables.USER_DAILY) and table_exists(on_spark, "small")
    assert not table_exists(on_spark, tables.USER_SEGMENTS)
    count, first = on_spark.execute(
        "SELECT count(*), min(day) FROM user_daily WHERE day >= $start AND day < $end",
        {"start": TREND_WINDOW[0], "end": TREND_WINDOW[1]},
    ).fetchone()
    expected = on_spark.execute(
        "SELECT count(*), min(day) FROM user_daily WHERE day >= ? AND day < ?", list(TREND_WINDOW)
    ).fetchall()
    assert [(count, first)] == expected and count > 0 and first == TREND_WINDOW[0]
