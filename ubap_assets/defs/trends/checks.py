"""Checks next to the trend assets: reconciliation with the raw events, sane values."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import trends
from ubap_assets.warehouse import tables as t


def _no_nan(frame: pl.DataFrame) -> list[str]:
    floats = [c for c, d in frame.schema.items() if d in (pl.Float64, pl.Float32)]
    bad = [c for c in floats if frame[c].is_nan().any() or frame[c].is_null().any()]
    return bad


@dg.asset_check(
    asset=t.DAILY_TRENDS,
    blocking=True,
    description=(
        "Totals of daily_trends equal a recount from the raw events (events, page views, "
        "purchases, revenue, active users, sessions per day) and breakdowns add up to the totals."
    ),
)
def daily_trends_reconcile(
    warehouse: DuckDBResource, daily_trends: pl.DataFrame
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        problems = trends.reconcile_daily(con, daily_trends)
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
    additional_ins={"daily_trends": dg.AssetIn(t.DAILY_TRENDS)},
    description=("Weekly events, sessions and revenue equal the sums of the daily ones; no NaN."),
)
def weekly_trends_reconcile(
    weekly_trends: pl.DataFrame, daily_trends: pl.DataFrame
) -> dg.AssetCheckResult:
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
    additional_ins={"daily_trends": dg.AssetIn(t.DAILY_TRENDS)},
    description=(
        "Segment 'all' equals daily_trends overall; segment sessions add up to at most the total."
    ),
)
def segment_trends_reconcile(
    segment_trends: pl.DataFrame, daily_trends: pl.DataFrame
) -> dg.AssetCheckResult:
    overall = daily_trends.filter(pl.col("dimension") == "all").select("day", "sessions", "events")
    seg_all = segment_trends.filter(pl.col("segment_id") == trends.ALL_SEGMENT_ID)
    joined = overall.join(seg_all, on="day", how="full", suffix="_s", coalesce=True)
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
        "Funnel steps never grow (each step <= the previous one); step 1 equals sessions with a "
        "page view; rates in [0, 1]."
    ),
)
def funnel_daily_monotonic(funnel_daily: pl.DataFrame) -> dg.AssetCheckResult:
    problems = _funnel_problems(funnel_daily, ["day"])
    return dg.AssetCheckResult(
        passed=not any(problems.values()) and not _no_nan(funnel_daily),
        metadata=problems,
    )


@dg.asset_check(
    blocking=True,
    asset=t.FUNNEL_DIMENSIONS,
    additional_ins={"funnel_daily": dg.AssetIn(t.FUNNEL_DAILY)},
    description=(
        "Each device's and traffic source's funnel never grows and has rates in [0, 1]; the "
        "'all' rows equal funnel_daily and, per day and step, each dimension's values add up to "
        "them (a session has one device and one source); no NaN."
    ),
)
def funnel_dimensions_reconcile(
    funnel_dimensions: pl.DataFrame, funnel_daily: pl.DataFrame
) -> dg.AssetCheckResult:
    keys = ["day", "dimension", "dimension_value"]
    problems = _funnel_problems(funnel_dimensions, keys)
    overall = funnel_daily.select("day", "step_index", total="sessions")
    sums = (
        funnel_dimensions.group_by("day", "dimension", "step_index")
        .agg(pl.col("sessions").sum())
        .join(overall, on=["day", "step_index"], how="full", coalesce=True)
    )
    mismatched = sums.filter(pl.col("sessions").fill_null(-1) != pl.col("total").fill_null(-2))
    problems["sums_not_equal_to_funnel_daily"] = mismatched.height
    nan_cols = _no_nan(funnel_dimensions)
    return dg.AssetCheckResult(
        passed=not any(problems.values()) and not nan_cols,
        metadata={
            **problems,
            "mismatched_dimensions": ", ".join(sorted(set(mismatched["dimension"].drop_nulls())))
            or "none",
            "nan_columns": str(nan_cols),
        },
    )


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
