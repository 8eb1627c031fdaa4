"""Checks next to the trend assets: reconciliation with the raw events, sane values.

A check on a day-partitioned table runs in the run that wrote it and checks that run's days
(read through the warehouse), so a nightly run never rereads the whole history.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import trends
from ubap_assets.core.daily import CHUNK_DAYS
from ubap_assets.warehouse import tables as t


def _no_nan(frame: pl.DataFrame) -> list[str]:
    floats = [c for c, d in frame.schema.items() if d in (pl.Float64, pl.Float32)]
    bad = [c for c in floats if frame[c].is_nan().any() or frame[c].is_null().any()]
    return bad


def check_days(context: dg.AssetCheckExecutionContext) -> tuple[date, date]:
    """The days [start, end) of the run the check runs in (the days its asset just wrote)."""
    window = context.partition_time_window
    return window.start.astimezone(UTC).date(), window.end.astimezone(UTC).date()


def day_chunks(start: date, end: date) -> Iterator[tuple[date, date]]:
    """[start, end) cut into consecutive windows of at most CHUNK_DAYS days."""
    while start < end:
        stop = min(start + timedelta(days=CHUNK_DAYS), end)
        yield start, stop
        start = stop


def _read_days(
    con: duckdb.DuckDBPyConnection, table: str, days: tuple[date, date] | None
) -> pl.DataFrame:
    """``table``'s rows of the days [start, end), or all of them when ``days`` is None."""
    if days is None:
        return con.execute(f"SELECT * FROM {table}").pl()
    return con.execute(f"SELECT * FROM {table} WHERE day >= ? AND day < ?", list(days)).pl()


@dg.asset_check(
    asset=t.DAILY_TRENDS,
    blocking=True,
    description=(
        "On the run's days, the totals of daily_trends equal a recount from the raw events "
        "(events, page views, purchases, revenue, active users, sessions per day) and breakdowns "
        "add up to the totals."
    ),
)
def daily_trends_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    start, end = check_days(context)
    with warehouse.get_connection() as con:
        daily_trends = _read_days(con, t.DAILY_TRENDS, (start, end))
        problems = []
        # A week of days per recount (core/daily.CHUNK_DAYS): the engine's memory stays at a
        # week of events on a long backfill; each day's recount does not depend on the chunk.
        for lo, hi in day_chunks(start, end):
            problems += trends.reconcile_daily(con, daily_trends, start=lo, end=hi)
    nan_cols = _no_nan(daily_trends)
    if nan_cols:
        problems.append(f"NaN/null in {nan_cols}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "days": daily_trends["day"].n_unique(),
        },
    )


@dg.asset_check(
    blocking=True,
    asset=t.WEEKLY_TRENDS,
    additional_deps=[t.DAILY_TRENDS],
    description=("Weekly events, sessions and revenue equal the sums of the daily ones; no NaN."),
)
def weekly_trends_reconcile(
    warehouse: DuckDBResource, weekly_trends: pl.DataFrame
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        daily_trends = _read_days(con, t.DAILY_TRENDS, None)
    daily = (
        daily_trends.with_columns(pl.col("day").dt.truncate("1w").alias("week_start"))
        .group_by("week_start", "dimension", "dimension_value")
        .agg(pl.col("events").sum(), pl.col("sessions").sum(), pl.col("revenue").sum())
    )
    joined = weekly_trends.join(
        daily,
        on=["week_start", "dimension", "dimension_value"],
        how="full",
        suffix="_d",
        coalesce=True,
    )
    bad = joined.filter(
        (pl.col("events").fill_null(0) != pl.col("events_d").fill_null(0))
        | (pl.col("sessions").fill_null(0) != pl.col("sessions_d").fill_null(0))
        | ((pl.col("revenue").fill_null(0) - pl.col("revenue_d").fill_null(0)).abs() > 0.01)
    )
    nan_cols = _no_nan(weekly_trends)
    return dg.AssetCheckResult(
        passed=bad.height == 0 and not nan_cols,
        metadata={"mismatched_rows": bad.height, "nan_columns": str(nan_cols)},
    )


@dg.asset_check(
    blocking=True,
    asset=t.SEGMENT_TRENDS,
    additional_deps=[t.DAILY_TRENDS],
    description=(
        "Segment 'all' equals daily_trends overall on the days segment_trends covers; segment "
        "sessions add up to at most the total."
    ),
)
def segment_trends_reconcile(
    warehouse: DuckDBResource, segment_trends: pl.DataFrame
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        overall = con.execute(
            f"SELECT day, sessions, events FROM {t.DAILY_TRENDS} WHERE dimension = 'all'"
        ).pl()
    # segment_trends covers a trailing window (UBAP_SEGMENT_TREND_DAYS): compare its days.
    seg_all = segment_trends.filter(pl.col("segment_id") == trends.ALL_SEGMENT_ID).select(
        "day", pl.col("sessions").alias("sessions_s"), pl.col("events").alias("events_s")
    )
    joined = seg_all.join(overall, on="day", how="left")
    bad_all = joined.filter(
        (pl.col("sessions").fill_null(-1) != pl.col("sessions_s").fill_null(-2))
        | (pl.col("events").fill_null(-1) != pl.col("events_s").fill_null(-2))
    ).height
    parts = (
        segment_trends.filter(pl.col("segment_id") != trends.ALL_SEGMENT_ID)
        .group_by("day")
        .agg(pl.col("events").sum().alias("seg_events"))
    )
    over = overall.join(parts, on="day").filter(pl.col("seg_events") > pl.col("events")).height
    return dg.AssetCheckResult(
        passed=bad_all == 0 and over == 0 and not _no_nan(segment_trends),
        metadata={"days_all_mismatch": bad_all, "days_segments_exceed_total": over},
    )


def _funnel_problems(funnel: pl.DataFrame, keys: list[str]) -> dict[str, int]:
    """Per funnel (one per ``keys``): steps that grew, rates out of [0, 1], negative drop-offs."""
    grew = (
        funnel.sort(*keys, "step_index")
        .with_columns(pl.col("sessions").diff().over(keys).alias("delta"))
        .filter(pl.col("delta") > 0)
        .height
    )
    out_of_range = funnel.filter(
        (pl.col("step_conversion") < 0) | (pl.col("step_conversion") > 1) | (pl.col("drop_off") < 0)
    ).height
    return {"steps_that_grew": grew, "rates_out_of_range": out_of_range}


@dg.asset_check(
    blocking=True,
    asset=t.FUNNEL_DAILY,
    description=(
        "On the run's days, funnel steps never grow (each step <= the previous one); rates in "
        "[0, 1]; no NaN."
    ),
)
def funnel_daily_monotonic(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        funnel_daily = _read_days(con, t.FUNNEL_DAILY, check_days(context))
    problems = _funnel_problems(funnel_daily, ["day"])
    return dg.AssetCheckResult(
        passed=not any(problems.values()) and not _no_nan(funnel_daily),
        metadata=problems,
    )


def funnel_dimension_problems(
    funnel_dimensions: pl.DataFrame, funnel_daily: pl.DataFrame
) -> tuple[bool, dict[str, object]]:
    """Whether funnel_dimensions is sound against funnel_daily (same days), and the metadata:
    steps that grew, rates out of range, per-day-and-step sums that differ from funnel_daily."""
    keys = ["day", "dimension", "dimension_value"]
    problems: dict[str, object] = dict(_funnel_problems(funnel_dimensions, keys))
    overall = funnel_daily.select("day", "step_index", total="sessions")
    sums = (
        funnel_dimensions.group_by("day", "dimension", "step_index")
        .agg(pl.col("sessions").sum())
        .join(overall, on=["day", "step_index"], how="full", coalesce=True)
    )
    mismatched = sums.filter(pl.col("sessions").fill_null(-1) != pl.col("total").fill_null(-2))
    problems["sums_not_equal_to_funnel_daily"] = mismatched.height
    nan_cols = _no_nan(funnel_dimensions)
    passed = not any(problems.values()) and not nan_cols
    problems["mismatched_dimensions"] = (
        ", ".join(sorted(set(mismatched["dimension"].drop_nulls()))) or "none"
    )
    problems["nan_columns"] = str(nan_cols)
    return passed, problems


@dg.asset_check(
    blocking=True,
    asset=t.FUNNEL_DIMENSIONS,
    additional_deps=[t.FUNNEL_DAILY],
    description=(
        "On the run's days, each device's and traffic source's funnel never grows and has rates "
        "in [0, 1]; the 'all' rows equal funnel_daily and, per day and step, each dimension's "
        "values add up to them (a session has one device and one source); no NaN."
    ),
)
def funnel_dimensions_reconcile(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    days = check_days(context)
    with warehouse.get_connection() as con:
        by_dimension = _read_days(con, t.FUNNEL_DIMENSIONS, days)
        overall = _read_days(con, t.FUNNEL_DAILY, days)
    passed, metadata = funnel_dimension_problems(by_dimension, overall)
    return dg.AssetCheckResult(passed=passed, metadata=metadata)


_USER_DAILY_VS_SESSIONS = f"""
    WITH u AS (
        SELECT day, sum(sessions) AS sessions, sum(events) AS events,
               sum(purchases) AS purchases, count(*) AS users
        FROM {t.USER_DAILY} WHERE day >= ? AND day < ? GROUP BY day
    ),
    s AS (
        SELECT day, count(*) AS sessions, sum(events) AS events, sum(purchases) AS purchases,
               count(DISTINCT user_id) AS users
        FROM {t.SESSIONS} WHERE day >= ? AND day < ? GROUP BY day
    )
    SELECT count(*) FROM u FULL JOIN s USING (day)
    WHERE u.sessions IS DISTINCT FROM s.sessions OR u.events IS DISTINCT FROM s.events
       OR u.purchases IS DISTINCT FROM s.purchases OR u.users IS DISTINCT FROM s.users
"""


@dg.asset_check(
    blocking=True,
    asset=t.USER_DAILY,
    additional_deps=[t.SESSIONS],
    description=(
        "On the run's days, user_daily adds up to the sessions: per day the same sessions, "
        "events, purchases and users."
    ),
)
def user_daily_adds_up_to_sessions(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    start, end = check_days(context)
    with warehouse.get_connection() as con:
        bad = con.execute(_USER_DAILY_VS_SESSIONS, [start, end, start, end]).fetchone()[0]
    return dg.AssetCheckResult(passed=bad == 0, metadata={"days_that_differ": int(bad)})


def _counts_every_page_event(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, table: str
) -> dg.AssetCheckResult:
    """Events with a page on the run's days against the sum of ``table``'s events there."""
    start, end = check_days(context)
    lo, hi = (datetime.combine(d, datetime.min.time()) for d in (start, end))
    with warehouse.get_connection() as con:
        events = con.execute(
            f"SELECT count(*) FROM {t.EVENTS} WHERE event_ts >= ? AND event_ts < ? "
            "AND page_id IS NOT NULL",
            [lo, hi],
        ).fetchone()[0]
        counted = con.execute(
            f"SELECT coalesce(sum(events), 0) FROM {table} WHERE day >= ? AND day < ?",
            [start, end],
        ).fetchone()[0]
    counts = {"events_with_a_page": int(events), "events_counted": int(counted)}
    return dg.AssetCheckResult(passed=events == counted, metadata=counts)


@dg.asset_check(
    blocking=True,
    asset=t.PAGE_DAILY,
    additional_deps=[t.EVENTS],
    description="On the run's days, page_daily counts every event that has a page, once.",
)
def page_daily_counts_events(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    return _counts_every_page_event(context, warehouse, t.PAGE_DAILY)


@dg.asset_check(
    blocking=True,
    asset=t.USER_PAGE_DAILY,
    additional_deps=[t.EVENTS],
    description="On the run's days, user_page_daily counts every event that has a page, once.",
)
def user_page_daily_counts_events(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    return _counts_every_page_event(context, warehouse, t.USER_PAGE_DAILY)


@dg.asset_check(
    blocking=True,
    asset=t.RETENTION_COHORTS,
    description=("Week 0 retention is 1.0 for every cohort and no rate exceeds 1."),
)
def retention_cohorts_sane(retention_cohorts: pl.DataFrame) -> dg.AssetCheckResult:
    week0 = retention_cohorts.filter(
        (pl.col("weeks_since") == 0) & (pl.col("active_users") != pl.col("cohort_size"))
    ).height
    over = retention_cohorts.filter(pl.col("retention_rate") > 1.0).height
    return dg.AssetCheckResult(
        passed=week0 == 0 and over == 0 and not _no_nan(retention_cohorts),
        metadata={"cohorts_week0_not_full": week0, "rates_above_one": over},
    )
