"""Sessions, daily aggregates, trends, funnels, retention, lifecycle ("trends").

Day-partitioned (a run may cover a range of days; each replaces its days atomically):
``sessions`` and ``user_daily`` by session start day, ``page_daily`` and ``user_page_daily`` by
event day (core/daily.py's SQL, in the warehouse or with UBAP_ENGINE=spark on Spark over the
lake), and ``daily_trends``, ``funnel_daily``, ``funnel_dimensions`` (small frames the IO manager
writes into the run's window). The weekly, segment, retention and lifecycle tables are
unpartitioned: each run recomputes them from the sessions and user-days in SQL, never from the
events, and never loads those into Python. The segment tables cover the last
UBAP_SEGMENT_TREND_DAYS days only (today's segments), so their cost does not grow with the
history. With UBAP_ENGINE=spark the trend SQL runs on Spark too
(engines/spark_connection.py), except the segment tables'.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import daily, trends
from ubap_assets.defs.events.partitions import daily_partitions
from ubap_assets.engines import lake, uses_spark
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.run_partitions import first_day_of_run
from ubap_assets.settings import current_settings
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists
from ubap_assets.warehouse.paths import lake_dir

if TYPE_CHECKING:
    from ubap_assets.engines.spark_connection import SparkConnection

GROUP = "trends"
OWNERS = ["team:analytics"]
KINDS = {"duckdb", "polars"}
# The trend stages whose SQL runs on the engine (UBAP_ENGINE, see _trend_engine).
TREND_KINDS = {"spark", "polars"} if uses_spark() else KINDS

# A session starting on day D may end on D+1, and one starting on D-1 must be told apart from
# D's: partition D of the sessions reads the events of D-1, D and D+1.
EVENTS_AROUND_THE_DAY = dg.AssetDep(
    t.EVENTS,
    partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
    ),
)


def day_partitioned(**kwargs) -> dict:
    """The arguments every day-partitioned asset of this group shares."""
    return {
        "partitions_def": daily_partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "metadata": {"partition_expr": "day"},
        "group_name": GROUP,
        "owners": OWNERS,
        **kwargs,
    }


def day_table(**kwargs) -> dict:
    """day_partitioned, for the four day tables core/daily.py builds. With UBAP_ENGINE=spark
    they live in the lake and never open the warehouse, so a backfill runs them a week of days
    per run, several runs at once (the PostgreSQL instance's queue); on DuckDB, one ranged run
    (one writer)."""
    arguments = day_partitioned(kinds={"spark", "parquet"} if uses_spark() else {"duckdb"})
    if uses_spark():
        arguments["backfill_policy"] = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
    return arguments | kwargs


@contextmanager
def _day_tables_reader(warehouse: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that reads the day tables: the warehouse's, or the lake's without opening
    the warehouse (UBAP_ENGINE=spark)."""
    if uses_spark():
        with lake.reader(lake_dir()) as con:
            yield con
    else:
        with warehouse.get_connection() as con:
            yield con


def _build_days(
    con: duckdb.DuckDBPyConnection, build: Callable[..., int], start: date, end: date
) -> int:
    """Run a core/daily.py builder over [start, end): in the warehouse ``con``, or with
    UBAP_ENGINE=spark on Spark over the lake, refreshing ``con``'s views of the lake after.
    Missing inputs, an unreachable Spark and a day table of an older layout that a run of
    these days alone would cut short fail the run with the reason."""
    from ubap_assets.engines.spark import SparkDays, SparkUnavailableError, spark_session

    try:
        if not uses_spark():
            return build(con, start, end)
        written = build(SparkDays(spark_session(), lake_dir()), start, end)
        lake.attach_views(con, lake_dir())
        return written
    except (LookupError, SparkUnavailableError, daily.OlderLayoutError) as err:
        raise dg.Failure(description=str(err)) from err


def run_days(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's days [start, end) (a single day or a range of them)."""
    window = context.partition_time_window
    return window.start.astimezone(UTC).date(), window.end.astimezone(UTC).date()


def _window_text(start: date, end: date) -> str:
    return f"{start} .. {date.fromordinal(end.toordinal() - 1)}"


def _notes(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> list[str]:
    bounds = trends.data_bounds(con)
    notes = list(bounds.notes)
    if not bounds.empty and bounds.last_complete_day != bounds.last_day:
        notes.append(f"last day {bounds.last_day} is partial (data ends {bounds.last_ts})")
    if {"day", "dimension", "events"} <= set(frame.columns):  # daily_trends
        overall = frame.filter(pl.col("dimension") == "all")
        empty = overall.filter(pl.col("events") == 0)["day"].to_list()
        if empty:
            notes.append(f"{len(empty)} day(s) with no events (zeros): {empty[:5]}")
        zero = overall.filter(pl.col("sessions") == 0).height
        if zero:
            notes.append(f"{zero} day(s) with no sessions: rates reported as 0.0")
    return notes


def _run(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    compute: Callable[[duckdb.DuckDBPyConnection], pl.DataFrame],
    period: str,
    **extra: object,
) -> dg.Output:
    with warehouse.get_connection() as con:
        frame = compute(con)
        notes = _notes(con, frame)
        has_segments = table_exists(con, t.USER_SEGMENTS)
    metadata: dict[str, object] = {
        "rows": frame.height,
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
        "preview": markdown_preview(frame),
        **extra,
    }
    if frame.height and period in frame.columns:
        metadata["first"] = str(frame[period].min())
        metadata["last"] = str(frame[period].max())
    if "segment_id" in frame.columns:
        metadata["segments"] = frame["segment_id"].n_unique()
        metadata["user_segments_present"] = has_segments
    for note in notes:
        context.log.info(note)
    return dg.Output(frame, metadata=metadata)


@dg.asset(**day_table(deps=[EVENTS_AROUND_THE_DAY, t.PAGES]))
def sessions(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """One row per session, in the partition of the day of its first event: user, device and
    source of its first event, events, page views (by page type), searches, carts, checkouts,
    purchases, revenue, bounce / conversion flags and the funnel steps reached in order."""
    start, end = run_days(context)
    with _day_tables_reader(warehouse) as con:
        written = _build_days(con, daily.build_sessions, start, end)
        total = con.execute(f"SELECT count(*) FROM {t.SESSIONS}").fetchone()[0]
        stats = con.execute(
            "SELECT avg(events), avg(CAST(is_bounce AS INTEGER)), avg(duration_s), "
            f"sum(events) FROM {t.SESSIONS} WHERE day >= ? AND day < ?",
            [start, end],
        ).fetchone()
    return dg.MaterializeResult(
        metadata={
            "window": _window_text(start, end),
            "rows_written": written,
            "dagster/row_count": int(total),
            "events": int(stats[3] or 0),
            "events_per_session": round(float(stats[0] or 0), 2),
            "bounce_share": round(float(stats[1] or 0), 4),
            "mean_duration_s": round(float(stats[2] or 0), 1),
        }
    )


def _written(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    table: str,
    build: Callable[[duckdb.DuckDBPyConnection, date, date], int],
) -> dg.MaterializeResult:
    """Run a core/daily.py builder over the run's days; metadata: window and rows."""
    start, end = run_days(context)
    with _day_tables_reader(warehouse) as con:
        written = _build_days(con, build, start, end)
        total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            "window": _window_text(start, end),
            "rows_written": written,
            "dagster/row_count": int(total),
        }
    )


@dg.asset(**day_table(deps=[t.SESSIONS]))
def user_daily(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per (day, user) with a session starting that day: their sessions, events, page
    views by page type, bounces, conversions, purchases, revenue, time, first device and source."""
    return _written(context, warehouse, t.USER_DAILY, daily.build_user_daily)


@dg.asset(**day_table(deps=[t.EVENTS]))
def page_daily(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per (day, page) with events that day: events, page views, viewers, sessions,
    carts, checkouts, purchases and revenue (by the day of the event)."""
    return _written(context, warehouse, t.PAGE_DAILY, daily.build_page_daily)


@dg.asset(**day_table(deps=[t.EVENTS]))
def user_page_daily(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per (day, user, page, event type): the user's events of that type on the page
    that day, first and last time (by the day of the event)."""
    return _written(context, warehouse, t.USER_PAGE_DAILY, daily.build_user_page_daily)


def _trend_engine(
    con: duckdb.DuckDBPyConnection, reads_back: tuple[str, ...] = ()
) -> "duckdb.DuckDBPyConnection | SparkConnection":
    """Where a trend stage's SQL runs: the warehouse ``con``, or with UBAP_ENGINE=spark Spark
    over the lake (the same DuckDB SQL, transpiled), with the warehouse tables of
    ``reads_back`` that exist shipped along (a weekly table as last written)."""
    if not uses_spark():
        return con
    from ubap_assets.engines.spark import SparkUnavailableError, spark_session
    from ubap_assets.engines.spark_connection import SparkConnection

    try:
        return SparkConnection.of_warehouse(spark_session(), lake_dir(), con, reads_back)
    except SparkUnavailableError as err:
        raise dg.Failure(description=str(err)) from err


def _settled(con: duckdb.DuckDBPyConnection, table: str, start: date, end: date) -> dict:
    """trends.settle_completeness for a day-partitioned trend table, as metadata: the rows of
    earlier days (outside the run) whose is_complete the data have settled since."""
    return {"is_complete_settled": trends.settle_completeness(con, table, start, end)}


@dg.asset(**day_partitioned(kinds=TREND_KINDS, deps=[t.SESSIONS, t.USER_DAILY]))
def daily_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x dimension (all / device / traffic_source) x value: users, sessions,
    events, page views, conversion and bounce rate, session duration, revenue, new/returning."""
    start, end = run_days(context)
    with warehouse.get_connection() as con:
        frame = trends.daily_trends(_trend_engine(con), start, end)
        settled = _settled(con, t.DAILY_TRENDS, start, end)
    last = frame.filter((pl.col("dimension") == "all") & pl.col("is_complete")).tail(1)
    extra: dict[str, object] = {"window": _window_text(start, end), **settled}
    if last.height:
        row = last.row(0, named=True)
        extra |= {
            "last_complete_day": str(row["day"]),
            "sessions_last_day": int(row["sessions"]),
            "conversion_rate_last_day": round(float(row["conversion_rate"]), 4),
            "revenue_last_day": round(float(row["revenue"]), 2),
        }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=TREND_KINDS, deps=[t.SESSIONS, t.USER_DAILY])
def weekly_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per ISO week x dimension x value: the daily_trends metrics over whole weeks
    (distinct users counted over the week). A run over a range of days recomputes the weeks
    from the one before the range on and keeps the earlier ones."""
    since = first_day_of_run(context.run.tags)
    return _run(
        context,
        warehouse,
        lambda con: trends.weekly_trends(
            _trend_engine(con, reads_back=(t.WEEKLY_TRENDS,)), since=since
        ),
        "week_start",
        recomputed_from=str(since) if since else "every week",
    )


def _run_segment_window(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, build: Callable[..., pl.DataFrame]
) -> dg.Output:
    """A segment table over the last UBAP_SEGMENT_TREND_DAYS days, the window in its metadata."""
    days = current_settings().segment_trend_days
    return _run(context, warehouse, lambda con: build(con, days=days), "day", window_days=days)


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.USER_DAILY, t.SESSIONS, t.USER_SEGMENTS]
)
def segment_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x segment (plus 'all') of the last UBAP_SEGMENT_TREND_DAYS days (90 by
    default) under today's segments: the daily_trends metrics per user segment; only 'all'
    until user_segments exists."""
    return _run_segment_window(context, warehouse, trends.segment_trends)


@dg.asset(**day_partitioned(kinds=TREND_KINDS, deps=[t.SESSIONS, t.USER_DAILY]))
def funnel_daily(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x funnel step (page_view, product_view, add_to_cart, checkout_start,
    purchase): sessions reaching the step in order, step conversion and drop-off."""
    start, end = run_days(context)
    with warehouse.get_connection() as con:
        frame = trends.funnel_daily(_trend_engine(con), start, end)
        settled = _settled(con, t.FUNNEL_DAILY, start, end)
    totals = frame.group_by("step_index", "step").agg(pl.col("sessions").sum()).sort("step_index")
    first = totals["sessions"][0] if totals.height else 0
    extra = {
        "window": _window_text(start, end),
        **settled,
        "overall_conversion": round(float(totals["sessions"][-1] / first), 4) if first else 0.0,
        "funnel_totals": markdown_preview(totals, 5),
    }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(**day_partitioned(kinds=TREND_KINDS, deps=[t.SESSIONS, t.USER_DAILY]))
def funnel_dimensions(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x dimension (all / device / traffic_source) x value x funnel step: the
    funnel_daily columns per device and per traffic source (each adds up to 'all')."""
    start, end = run_days(context)
    with warehouse.get_connection() as con:
        frame = trends.funnel_dimensions(_trend_engine(con), start, end)
        settled = _settled(con, t.FUNNEL_DIMENSIONS, start, end)
    totals = (
        frame.filter(pl.col("dimension") != "all")
        .group_by("dimension", "dimension_value", "step_index")
        .agg(pl.col("sessions").sum())
        .sort("dimension", "dimension_value", "step_index")
        .group_by("dimension", "dimension_value", maintain_order=True)
        .agg(
            sessions=pl.col("sessions").first(),
            overall_conversion=pl.when(pl.col("sessions").first() > 0)
            .then(pl.col("sessions").last() / pl.col("sessions").first())
            .otherwise(0.0)
            .round(4),
        )
    )
    extra = {
        "window": _window_text(start, end),
        **settled,
        "dimension_values": totals.height,
        "overall_conversion_by_value": markdown_preview(totals, 20),
    }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS, t.USER_DAILY, t.USER_SEGMENTS]
)
def funnel_segments(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x segment x funnel step of the last UBAP_SEGMENT_TREND_DAYS days, as
    segment_trends (segment 'all' always; the others once user_segments exists)."""
    return _run_segment_window(context, warehouse, trends.funnel_segments)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=TREND_KINDS, deps=[t.USER_DAILY])
def retention_cohorts(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per weekly first-seen cohort x weeks since: cohort size, active users and the
    retention rate."""
    with warehouse.get_connection() as con:
        frame = trends.retention_cohorts(_trend_engine(con))
    week1 = frame.filter((pl.col("weeks_since") == 1) & pl.col("is_complete"))
    extra = {}
    if week1.height and week1["cohort_size"].sum():
        extra["week1_retention"] = round(
            float(week1["active_users"].sum() / week1["cohort_size"].sum()), 4
        )
    return _run(context, warehouse, lambda con: frame, "cohort_week", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=TREND_KINDS, deps=[t.USER_DAILY])
def lifecycle_weekly(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per week x lifecycle state (new, returning, resurrecting, dormant) with the
    week's quick ratio. A run over a range of days recomputes the weeks from the one before the
    range on and keeps the earlier ones."""
    since = first_day_of_run(context.run.tags)
    return _run(
        context,
        warehouse,
        lambda con: trends.lifecycle_weekly(
            _trend_engine(con, reads_back=(t.LIFECYCLE_WEEKLY,)), since=since
        ),
        "week_start",
        recomputed_from=str(since) if since else "every week",
    )
