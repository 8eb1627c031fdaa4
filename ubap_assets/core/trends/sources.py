"""The rows the trends aggregate: sessions, or user-days, and the window of days they cover.

``user_daily`` holds the user-days in the pipeline; where only ``sessions`` exists (a tool or a
test that built just the sessions) the same rows are aggregated from the sessions, so every
function gives the same answer either way.
"""

from datetime import date, timedelta

import duckdb

from ubap_assets.core.daily import EMPTY_WINDOW, exact_sum
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

# Per-session rows in the shape of a user-day: the columns every trend metric sums.
SESSION_ROWS = """
    SELECT day, user_id, device, traffic_source, 1 AS n_sessions,
           CAST(converted AS INTEGER) AS n_converted, CAST(is_bounce AS INTEGER) AS n_bounced,
           events, page_views, purchases, revenue, duration_s
    FROM {sessions}"""

_USER_DAILY_ROWS = """
    SELECT day, user_id, sessions AS n_sessions, converted_sessions AS n_converted,
           bounces AS n_bounced, events, page_views, purchases, revenue,
           session_seconds AS duration_s, first_session_start, last_event_ts
    FROM {user_daily}"""

_USER_DAYS_FROM_SESSIONS = f"""
    SELECT day, user_id, count(*) AS n_sessions,
           count(*) FILTER (WHERE converted) AS n_converted,
           count(*) FILTER (WHERE is_bounce) AS n_bounced,
           sum(events) AS events, sum(page_views) AS page_views, sum(purchases) AS purchases,
           {exact_sum("revenue")} AS revenue, {exact_sum("duration_s")} AS duration_s,
           min(session_start) AS first_session_start, max(session_end) AS last_event_ts
    FROM {{sessions}} GROUP BY day, user_id"""


def session_rows(sessions: str = tables.SESSIONS) -> str:
    """SQL: one row per session with n_sessions = 1 and the summed columns."""
    return SESSION_ROWS.format(sessions=sessions)


def user_day_rows(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
) -> str:
    """SQL: one row per (day, user) with n_sessions, n_converted, n_bounced, the summed columns,
    first_session_start and last_event_ts: ``user_daily`` when it exists, else from sessions."""
    if table_exists(con, user_daily):
        return _USER_DAILY_ROWS.format(user_daily=user_daily)
    return _USER_DAYS_FROM_SESSIONS.format(sessions=sessions)


def day_window(
    con: duckdb.DuckDBPyConnection,
    start: date | None,
    end: date | None,
    sessions: str = tables.SESSIONS,
) -> tuple[date, date]:
    """[start, end) as given, or every day of ``sessions`` (first to last) when both are None."""
    if start is None and end is None:
        first, last = con.execute(f"SELECT min(day), max(day) FROM {sessions}").fetchone()
        return (first, last + timedelta(days=1)) if first else EMPTY_WINDOW
    if start is None or end is None:
        raise ValueError("give both start and end (or neither, for every day of the sessions)")
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start}): the window is [start, end)")
    return start, end


def trailing_window(
    con: duckdb.DuckDBPyConnection, days: int | None, sessions: str = tables.SESSIONS
) -> tuple[date, date]:
    """[start, end): the last ``days`` days of ``sessions`` up to its last day (every day of it
    when ``days`` is None or the sessions cover fewer days)."""
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ValueError(
            f"days must be a whole number of days, at least 1 (got {days!r}): pass the "
            "trailing window's length, or None for every day"
        )
    start, end = day_window(con, None, None, sessions)
    if days is not None:
        start = max(start, end - timedelta(days=days))
    return start, end
