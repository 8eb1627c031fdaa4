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


def funnel_by_group(breakdown: pl.DataFrame) -> pl.DataFrame:
    """From :func:`funnel_breakdown`: one row per group with its sessions at each step (a column
    per step) and ``overall_conversion``; 'All users' first, then the best converting."""
    if breakdown.is_empty():
        return breakdown
    wide = breakdown.pivot(on="step", index="group", values="sessions", aggregate_function="sum")
    last_step = breakdown["step_order"].max()
    final = breakdown.filter(pl.col("step_order") == last_step).select(
        "group", "overall_conversion"
    )
    return wide.join(final, on="group", how="left").sort(
        pl.col("group") != "All users", "overall_conversion", descending=[False, True]
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


# Funnel breakdowns the page offers: label -> the grouping (a funnel_dimensions dimension, or
# "segment" for funnel_segments).
BREAKDOWNS: dict[str, str] = {
    "Device": "device",
    "Traffic source": "traffic_source",
    "Segment": "segment",
}


@cached
def funnel_breakdown(
    snap: Snapshot, start: date | None, end: date | None, by: str = "segment"
) -> pl.DataFrame:
    """Per group (a segment, device or traffic source, as ``by`` says) and step: ``group``,
    ``step_order``, ``step``, ``sessions`` and ``overall_conversion`` (share of that group's
    first step), for the breakdown chart."""
    if by not in BREAKDOWNS.values():
        raise ValueError(f"funnel breakdown must be one of {sorted(BREAKDOWNS.values())}: {by!r}")
    with reading(snap) as reader:
        if by == "segment":
            frame = reader.funnel_steps_by_segment(start, end).rename({"segment": "group"})
        else:
            frame = reader.funnel_steps_by_dimension(by, start, end).rename({"value": "group"})
    if frame.is_empty():
        return frame
    first = pl.col("sessions").first().over("group", order_by="step_order")
    return frame.with_columns(
        overall_conversion=pl.when(first > 0).then(pl.col("sessions") / first).otherwise(0.0)
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
