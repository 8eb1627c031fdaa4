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
def retention(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        cohorts = reader.retention_cohorts()
    return cohorts.select(
        "cohort_week",
        "weeks_since",
        pl.col("cohort_size").alias("cohort_users"),
        "active_users",
        pl.col("retention_rate").alias("retention"),
        "is_complete",
    )


@cached
def lifecycle(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        weeks = reader.lifecycle_weekly()
    return weeks.select(
        "week_start", "state", "users", "signed_users", "quick_ratio", "is_complete"
    )
