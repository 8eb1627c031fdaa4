"""Trends and the headline KPIs (Overview and Trends pages)."""

from datetime import date, timedelta

import polars as pl

from ubap_assets.core.metrics import (
    HEADLINE_KPIS,
    TREND_METRICS,
    Kpi,
    KpiPeriod,
    headline_kpis,
    overall_complete_days,
)
from ubap_assets.core.metrics import period_kpis as core_period_kpis
from ubap_assets.warehouse.queries.trends import GRAIN_TABLES
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading
from ubap_dashboard.period import Period

BREAKDOWNS: dict[str, str] = {
    "all": "All users",
    "device": "Device",
    "traffic_source": "Traffic source",
}


def known_metric(metric: str) -> str:
    """``metric`` if it is a trend metric a person may pick, else ValueError."""
    if metric not in TREND_METRICS:
        raise ValueError(f"unknown metric {metric!r}: pick one of {', '.join(TREND_METRICS)}")
    return metric


def _breakdown(dimension: str) -> str:
    if dimension not in BREAKDOWNS:
        raise ValueError(f"unknown breakdown {dimension!r}: pick one of {', '.join(BREAKDOWNS)}")
    return dimension


@cached
def trend_days(snap: Snapshot) -> tuple[date, date] | None:
    """First and last day in daily_trends."""
    with reading(snap) as reader:
        return reader.trend_day_range()


@cached
def trend_table(
    snap: Snapshot, grain: str, dimension: str, start: date | None, end: date | None
) -> pl.DataFrame:
    """All metric columns of the daily or weekly trends for one breakdown and date range."""
    with reading(snap) as reader:
        return reader.trends(grain, start, end, _breakdown(dimension))


@cached
def trend_series(
    snap: Snapshot,
    metric: str,
    grain: str = "daily",
    dimension: str = "all",
    start: date | None = None,
    end: date | None = None,
) -> pl.DataFrame:
    """``day``, ``segment`` (the breakdown value), ``value`` and ``is_complete`` for one metric."""
    column = known_metric(metric)
    period = GRAIN_TABLES[grain][1]
    return trend_table(snap, grain, dimension, start, end).select(
        pl.col(period).alias("day"),
        pl.col("dimension_value").alias("segment"),
        pl.col(column).alias("value"),
        "is_complete",
    )


@cached
def kpis(snap: Snapshot, days: int = 7) -> KpiPeriod | None:
    """Headline figures for the last ``days`` complete days against the ``days`` before
    (``core.metrics.headline_kpis``: rates from summed numerators, not averaged)."""
    with reading(snap) as reader:
        daily = reader.trends("daily")
    return headline_kpis(overall_complete_days(daily), days)


def _period_aggregates() -> list[pl.Expr]:
    """Every trend metric over a run of days: counts summed, daily user counts averaged (a
    user active on two days is one user each day), rates and per-session figures recomputed
    from the summed counts (never averaged), as ``core.metrics.period_kpis`` does."""
    sessions = pl.col("sessions").sum()

    def per_session(total: pl.Expr) -> pl.Expr:
        return pl.when(sessions > 0).then(total / sessions).otherwise(0.0)

    return [
        pl.len().alias("days"),
        pl.col("active_users").mean(),
        pl.col("returning_users").mean(),
        pl.col("new_users").sum(),
        sessions.alias("sessions"),
        pl.col("events").sum(),
        pl.col("page_views").sum(),
        pl.col("purchases").sum(),
        pl.col("revenue").sum(),
        per_session(pl.col("converted_sessions").sum()).alias("conversion_rate"),
        per_session(pl.col("bounced_sessions").sum()).alias("bounce_rate"),
        per_session((pl.col("mean_session_duration_s") * pl.col("sessions")).sum()).alias(
            "mean_session_duration_s"
        ),
        per_session((pl.col("pages_per_session") * pl.col("sessions")).sum()).alias(
            "pages_per_session"
        ),
    ]


@cached
def period_values(
    snap: Snapshot, dimension: str, start: date | None, end: date | None
) -> pl.DataFrame:
    """Per breakdown value (``segment``): every trend metric over the days [start, end] and
    ``days`` (how many days of data the period holds)."""
    daily = trend_table(snap, "daily", dimension, start, end)
    return (
        daily.rename({"dimension_value": "segment"})
        .group_by("segment")
        .agg(_period_aggregates())
        .sort("segment")
    )


def comparison(
    snap: Snapshot, metric: str, dimension: str, current: tuple[date, date], previous: tuple
) -> pl.DataFrame:
    """Per breakdown value: ``value`` over the current days, ``previous`` over the days before
    (null where the data does not cover them all) and ``change`` (value - previous)."""
    column = known_metric(metric)
    now = period_values(snap, dimension, *current).select("segment", "days", value=column)
    before = period_values(snap, dimension, *previous).select(
        "segment", previous_days="days", previous=column
    )
    wanted = (previous[1] - previous[0]).days + 1
    return (
        now.join(before, on="segment", how="left")
        .with_columns(previous=pl.when(pl.col("previous_days") == wanted).then(pl.col("previous")))
        .with_columns(change=pl.col("value") - pl.col("previous"))
        .drop("previous_days")
    )


@cached
def period_kpis(
    snap: Snapshot, start: date, end: date, previous: tuple[date, date] | None
) -> KpiPeriod | None:
    """The headline KPIs over complete days in [start, end], against ``previous`` when given
    and fully covered by complete days (else no previous figures)."""
    with reading(snap) as reader:
        daily = overall_complete_days(reader.trends("daily"))
    current = daily.filter(pl.col("day").is_between(start, end))
    if current.is_empty():
        return None
    before = daily.filter(pl.col("day").is_between(*previous)) if previous else daily.clear()
    wanted = (previous[1] - previous[0]).days + 1 if previous else 0
    now = core_period_kpis(current)
    then = core_period_kpis(before) if previous and before.height == wanted else None
    return KpiPeriod(
        start=current["day"].min(),
        end=current["day"].max(),
        previous_start=previous[0] if then else None,
        kpis=tuple(
            Kpi(metric, label, float(now[metric]), float(then[metric]) if then else None)
            for metric, label in HEADLINE_KPIS.items()
        ),
    )


def previous_series(
    snap: Snapshot, metric: str, grain: str, dimension: str, period: Period
) -> pl.DataFrame:
    """``trend_series`` of the period before ``period``, moved forward onto its dates (``day``)
    with the real date in ``previous_day`` (weekly: moved by whole weeks)."""
    shift = period.shift
    if grain == "weekly":
        shift = timedelta(weeks=max(1, round(period.days / 7)))
    before = trend_series(
        snap, metric, grain, dimension, period.previous_start, period.previous_end
    )
    return before.with_columns(previous_day=pl.col("day"), day=pl.col("day") + shift)
