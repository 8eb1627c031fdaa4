"""What the sessions cover: first and last day, and which days and weeks are complete."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.core.trends.sources import user_day_rows
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

# A day counts as complete when the data reaches this hour of it (or a later day exists).
COMPLETE_FROM_HOUR = 23


@dataclass(frozen=True)
class Bounds:
    """What the events cover: first/last day, the last complete day and the event count."""

    events: int
    first_day: date | None
    last_day: date | None
    last_ts: datetime | None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.events == 0

    @property
    def last_complete_day(self) -> date | None:
        if self.last_day is None or self.last_ts is None:
            return None
        if self.last_ts >= datetime.combine(self.last_day, datetime.min.time()) + timedelta(
            hours=COMPLETE_FROM_HOUR
        ):
            return self.last_day
        return self.last_day - timedelta(days=1)

    def day_is_complete(self, column: str = "day") -> pl.Expr:
        """``is_complete`` of a daily row: its day is at or before the last complete day."""
        if self.empty:
            return pl.lit(False).alias("is_complete")
        return (pl.col(column) <= self.last_complete_day).alias("is_complete")

    def week_is_complete(self, column: str) -> pl.Expr:
        """``is_complete`` of a weekly row: all 7 days of the week lie inside the complete data."""
        if self.empty:
            return pl.lit(False).alias("is_complete")
        return (
            (pl.col(column) >= pl.lit(self.first_day))
            & (pl.col(column) + pl.duration(days=6) <= pl.lit(self.last_complete_day))
        ).alias("is_complete")


def data_bounds(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
    since: date | None = None,
) -> Bounds:
    """First/last day of the data: the first session start and the last session end (read from
    the small user_daily table when it exists, else from the sessions).

    ``since``: read only the days from it on (a trailing window that holds the last day): the
    last day and the complete days are the same, ``events`` and ``first_day`` are the window's.
    """
    rows = user_day_rows(con, sessions, user_daily)
    where = "" if since is None else "WHERE day >= $since"
    n, first_ts, last_ts = con.execute(
        f"SELECT sum(events), min(first_session_start), max(last_event_ts) FROM ({rows}) {where}",
        {} if since is None else {"since": since},
    ).fetchone()
    if not n:
        return Bounds(0, None, None, None, ["events is empty: nothing to aggregate"])
    return Bounds(int(n), first_ts.date(), last_ts.date(), last_ts)


def settle_completeness(con: duckdb.DuckDBPyConnection, table: str, start: date, end: date) -> int:
    """Set ``is_complete`` of the rows of day-partitioned ``table`` outside [start, end) (the
    run's days) to what the data say now; returns the rows changed.

    A day's flag is the one thing in its row that later days decide: the data's last day is
    written incomplete when its data stop before COMPLETE_FROM_HOUR, and becomes complete once
    a later day has data. The nightly look-back rewrites it the next night, but not when that
    night has no data (a shop's closed Sunday, an outage): without this, the day would stay
    incomplete, left out of the anomaly series and the summaries, unlike in a full run."""
    if not table_exists(con, table):
        return 0
    last = data_bounds(con).last_complete_day
    changed = con.execute(
        f"UPDATE main.{table} SET is_complete = coalesce(day <= $last, FALSE) "
        "WHERE (day < $start OR day >= $end) "
        "AND is_complete IS DISTINCT FROM coalesce(day <= $last, FALSE)",
        {"last": last, "start": start, "end": end},
    ).fetchone()
    return int(changed[0]) if changed else 0
