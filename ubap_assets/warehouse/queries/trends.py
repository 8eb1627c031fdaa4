"""Trend series: daily and weekly trends per breakdown, per segment, and the summary row."""

from datetime import date
from typing import Any, Literal

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, Where, first_or_none, select_where

Grain = Literal["daily", "weekly"]
# The table and its period column for each grain.
GRAIN_TABLES: dict[str, tuple[str, str]] = {
    "daily": (t.DAILY_TRENDS, "day"),
    "weekly": (t.WEEKLY_TRENDS, "week_start"),
}


class TrendQueries:
    def trends(
        self: SnapshotAccess,
        grain: Grain,
        start: date | None = None,
        end: date | None = None,
        dimension: str = "all",
        dimension_value: str | None = None,
    ) -> pl.DataFrame:
        """daily_trends (or weekly_trends, week_start in [start, end]) rows of one dimension
        (all/device/traffic_source), oldest first."""
        table, period = GRAIN_TABLES[grain]
        where = Where().between(period, start, end)
        where.equals(dimension=dimension, dimension_value=dimension_value)
        return select_where(self, table, where, f"{period}, dimension_value")

    def daily_trends(self, **filters: Any) -> pl.DataFrame:
        """``trends('daily', ...)``."""
        return self.trends("daily", **filters)  # type: ignore[attr-defined]

    def trend_day_range(self: SnapshotAccess) -> tuple[date, date] | None:
        """First and last day in daily_trends (None when it is empty)."""
        self.require(t.DAILY_TRENDS)
        found = self.rows(f"SELECT min(day) AS lo, max(day) AS hi FROM {t.DAILY_TRENDS}")
        return None if found[0]["lo"] is None else (found[0]["lo"], found[0]["hi"])

    def segment_trends(
        self: SnapshotAccess,
        start: date | None = None,
        end: date | None = None,
        segment_id: str | None = None,
    ) -> pl.DataFrame:
        """segment_trends rows (segment 'all' included), by day then segment."""
        where = Where().between("day", start, end).equals(segment_id=segment_id)
        return select_where(self, t.SEGMENT_TRENDS, where, "day, segment_id")

    def summary(self: SnapshotAccess) -> dict[str, Any] | None:
        """The latest summary row (None when the table is empty)."""
        self.require(t.SUMMARY)
        return first_or_none(
            self.rows(f"SELECT * FROM {t.SUMMARY} ORDER BY generated_at DESC LIMIT 1")
        )
