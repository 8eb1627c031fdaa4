"""Sessions, daily and weekly trends, segment trends, funnels, retention, lifecycle ("trends").

``sessions`` is the one pass over the big ``events`` table (written inside DuckDB); every other
asset aggregates it in SQL through the ``warehouse`` resource and returns a small polars frame
for the IO manager to store.
"""

from collections.abc import Callable

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import trends
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists

GROUP = "trends"
OWNERS = ["team:analytics"]
KINDS = {"duckdb", "polars"}


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


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, deps=[t.EVENTS, t.PAGES])
def sessions(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """One row per session: user, start day, device and source of its first event, events, page
    views, purchases, revenue, bounce / conversion flags and the funnel steps reached in order."""
    with warehouse.get_connection() as con:
        try:
            n = trends.build_sessions(con)
        except LookupError as err:
            raise dg.Failure(description=str(err)) from err
        bounds = trends.data_bounds(con)
        stats = con.execute(
            "SELECT avg(events), avg(CAST(is_bounce AS INTEGER)), avg(duration_s) "
            f"FROM {t.SESSIONS}"
        ).fetchone()
    metadata: dict[str, object] = {
        "dagster/row_count": n,
        "events": bounds.events,
        "first_day": str(bounds.first_day),
        "last_day": str(bounds.last_day),
        "last_complete_day": str(bounds.last_complete_day),
        "events_per_session": round(float(stats[0] or 0), 2),
        "bounce_share": round(float(stats[1] or 0), 4),
        "notes": dg.MetadataValue.md("\n".join(f"- {x}" for x in bounds.notes) or "none"),
    }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def daily_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x dimension (all / device / traffic_source) x value: users, sessions,
    events, page views, conversion and bounce rate, session duration, revenue, new/returning."""
    with warehouse.get_connection() as con:
        frame = trends.daily_trends(con)
    last = frame.filter((pl.col("dimension") == "all") & pl.col("is_complete")).tail(1)
    extra: dict[str, object] = {}
    if last.height:
        row = last.row(0, named=True)
        extra = {
            "last_complete_day": str(row["day"]),
            "sessions_last_day": int(row["sessions"]),
            "conversion_rate_last_day": round(float(row["conversion_rate"]), 4),
            "revenue_last_day": round(float(row["revenue"]), 2),
        }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def weekly_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per ISO week x dimension x value: the daily_trends metrics over whole weeks
    (distinct users counted over the week)."""
    return _run(context, warehouse, trends.weekly_trends, "week_start")


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS, t.USER_SEGMENTS])
def segment_trends(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x segment (plus 'all'): the daily_trends metrics per user segment;
    only 'all' until user_segments exists."""
    return _run(context, warehouse, trends.segment_trends, "day")


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def funnel_daily(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x funnel step (page_view, product_view, add_to_cart, checkout_start,
    purchase): sessions reaching the step in order, step conversion and drop-off."""
    with warehouse.get_connection() as con:
        frame = trends.funnel_daily(con)
    totals = frame.group_by("step_index", "step").agg(pl.col("sessions").sum()).sort("step_index")
    first = totals["sessions"][0] if totals.height else 0
    extra = {
        "overall_conversion": round(float(totals["sessions"][-1] / first), 4) if first else 0.0,
        "funnel_totals": markdown_preview(totals, 5),
    }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def funnel_dimensions(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x dimension (all / device / traffic_source) x value x funnel step: the
    funnel_daily columns per device and per traffic source (each adds up to 'all')."""
    with warehouse.get_connection() as con:
        frame = trends.funnel_dimensions(con)
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
        "dimension_values": totals.height,
        "overall_conversion_by_value": markdown_preview(totals, 20),
    }
    return _run(context, warehouse, lambda con: frame, "day", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS, t.USER_SEGMENTS])
def funnel_segments(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per day x segment x funnel step (segment 'all' always; the others once
    user_segments exists)."""
    return _run(context, warehouse, trends.funnel_segments, "day")


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def retention_cohorts(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per weekly first-seen cohort x weeks since: cohort size, active users and the
    retention rate."""
    with warehouse.get_connection() as con:
        frame = trends.retention_cohorts(con)
    week1 = frame.filter((pl.col("weeks_since") == 1) & pl.col("is_complete"))
    extra = {}
    if week1.height and week1["cohort_size"].sum():
        extra["week1_retention"] = round(
            float(week1["active_users"].sum() / week1["cohort_size"].sum()), 4
        )
    return _run(context, warehouse, lambda con: frame, "cohort_week", **extra)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds=KINDS, deps=[t.SESSIONS])
def lifecycle_weekly(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.Output:
    """One row per week x lifecycle state (new, returning, resurrecting, dormant) with the
    week's quick ratio."""
    return _run(context, warehouse, trends.lifecycle_weekly, "week_start")
