"""The funnel, retention cohorts and the lifecycle (Funnels page)."""

from datetime import date

import polars as pl

from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading


@cached
def funnel(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Sessions reaching each step over a period, with step conversion and drop-off recomputed.

    Columns: step_order, step, sessions, step_conversion, overall_conversion, drop_off (shares).
    """
    with reading(snap) as reader:
        steps = reader.funnel(start, end)
    return steps.select(
        pl.col("step_index").alias("step_order"),
        "step",
        "sessions",
        "step_conversion",
        "overall_conversion",
        pl.col("drop_off_rate").alias("drop_off"),
    )


@cached
def funnel_by_segment(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Per segment: sessions at each step over the period and the overall conversion."""
    with reading(snap) as reader:
        frame = reader.funnel_steps_by_segment(start, end)
    if frame.is_empty():
        return frame
    wide = frame.pivot(on="step", index="segment", values="sessions", aggregate_function="sum")
    first = frame.filter(pl.col("step_order") == 1).select("segment", entered="sessions")
    last_step = frame["step_order"].max()
    final = frame.filter(pl.col("step_order") == last_step).select("segment", completed="sessions")
    return (
        wide.join(first, on="segment", how="left")
        .join(final, on="segment", how="left")
        .with_columns(
            overall_conversion=pl.when(pl.col("entered") > 0)
            .then(pl.col("completed") / pl.col("entered"))
            .otherwise(0.0)
        )
        .drop("entered", "completed")
        .sort(pl.col("segment") != "All users", "overall_conversion", descending=[False, True])
    )


@cached
def funnel_over_time(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Per day: ``day``, ``value`` (sessions reaching the last step / sessions entering the
    funnel), ``entered`` and ``completed``."""
    with reading(snap) as reader:
        daily = reader.funnel_daily(start, end)
    if daily.is_empty():
        return pl.DataFrame(schema={"day": pl.Date, "value": pl.Float64})
    first, last = daily["step_index"].min(), daily["step_index"].max()
    return (
        daily.group_by("day")
        .agg(
            entered=pl.col("sessions").filter(pl.col("step_index") == first).sum(),
            completed=pl.col("sessions").filter(pl.col("step_index") == last).sum(),
        )
        .with_columns(
            value=pl.when(pl.col("entered") > 0)
            .then(pl.col("completed") / pl.col("entered"))
            .otherwise(0.0)
        )
        .sort("day")
    )


@cached
def funnel_breakdown(snap: Snapshot, start: date | None, end: date | None) -> pl.DataFrame:
    """Per segment and step: ``group``, ``step_order``, ``step``, ``sessions`` and
    ``overall_conversion`` (share of that segment's first step), for the breakdown chart."""
    with reading(snap) as reader:
        frame = reader.funnel_steps_by_segment(start, end)
    if frame.is_empty():
        return frame
    return frame.rename({"segment": "group"}).with_columns(
        overall_conversion=pl.when(pl.col("sessions").first().over("group") > 0)
        .then(pl.col("sessions") / pl.col("sessions").first().over("group"))
        .otherwise(0.0)
    )


@cached
def retention(snap: Snapshot) -> pl.DataFrame:
    """Cohorts by week; ``pre_data`` marks the first week's cohort, which also holds everyone
    who was active before the data starts (their first visit is earlier than the data)."""
    with reading(snap) as reader:
        cohorts = reader.retention_cohorts()
    return cohorts.select(
        "cohort_week",
        "weeks_since",
        pl.col("cohort_size").alias("cohort_users"),
        "active_users",
        pl.col("retention_rate").alias("retention"),
        "is_complete",
        pre_data=pl.col("cohort_week") == pl.col("cohort_week").min(),
    )


@cached
def lifecycle(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        weeks = reader.lifecycle_weekly()
    # The first week counts everyone as new: they were first seen when the data starts.
    return weeks.select(
        "week_start",
        "state",
        "users",
        "signed_users",
        "quick_ratio",
        "is_complete",
        first_week=pl.col("week_start") == pl.col("week_start").min(),
    )
