"""Trends and the headline KPIs (Overview and Trends pages)."""

from datetime import date

import polars as pl

from ubap_assets.core.metrics import (
    TREND_METRICS,
    KpiPeriod,
    headline_kpis,
    overall_complete_days,
)
from ubap_assets.warehouse.queries.trends import GRAIN_TABLES
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading

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
