"""The trend metrics per day, ISO week and segment: daily_trends, weekly_trends, segment_trends.

One SQL shape serves the three: an aggregate over the sessions with GROUPING SETS for the
breakdowns, zero-filled over the calendar so that every series is gap-free.
"""

from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.core.daily import exact_sum
from ubap_assets.core.metrics import TREND_COLUMNS
from ubap_assets.core.trends.bounds import data_bounds
from ubap_assets.core.trends.segments import ALL_SEGMENT_ID, segment_labels, use_segments
from ubap_assets.core.trends.sources import (
    day_window,
    session_rows,
    trailing_window,
    user_day_rows,
)
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

DIMENSIONS: tuple[str, ...] = ("device", "traffic_source")
# The metric columns shared by daily_trends, weekly_trends and segment_trends, in order.
METRICS: tuple[str, ...] = TREND_COLUMNS
# The first nine are counts (Int64); revenue and the ratios are Float64.
INTEGER_METRICS = METRICS[:9]
FLOAT_METRICS = METRICS[9:]


def _period(expr: str, grain: str) -> str:
    if grain == "day":
        return f"CAST({expr} AS DATE)"
    if grain == "week":
        return f"CAST(date_trunc('week', {expr}) AS DATE)"
    raise ValueError(f"grain must be 'day' or 'week' (got {grain!r})")


def _calendar_sql(grain: str) -> str:
    """SQL: every period (day or ISO week) of [$start, $end) as ``period``, none when the window
    is empty. Counted in whole periods from the first (integer steps, no interval ranges), so
    that SQLGlot gives Spark the same calendar."""
    first = _period("CAST($start AS DATE)", grain)
    last = _period("CAST($end AS DATE) - 1", grain)
    days = 1 if grain == "day" else 7
    return f"""
        SELECT CAST(first_period + {days} * CAST(i AS INTEGER) AS DATE) AS period
        FROM (
            SELECT {first} AS first_period,
                   unnest(range(0, datediff('{grain}', {first}, {last}) + 1)) AS i
            WHERE CAST($start AS DATE) < CAST($end AS DATE)
        )"""


def dimension_sql(dims: tuple[str, ...]) -> tuple[str, str, str]:
    """GROUPING SETS over (period) and (period, dim) for each dim; labels for the outputs."""
    sets = ", ".join(["(period)"] + [f"(period, {d})" for d in dims])
    if not dims:
        return sets, "'all'", "'all'"
    name = " ".join(f"WHEN GROUPING({d}) = 0 THEN '{d}'" for d in dims)
    value = " ".join(
        f"WHEN GROUPING({d}) = 0 THEN coalesce(CAST({d} AS VARCHAR), 'unknown')" for d in dims
    )
    return sets, f"CASE {name} ELSE 'all' END", f"CASE {value} ELSE 'all' END"


def dimension_keys_sql(dims: tuple[str, ...], rows: str, grain: str = "day") -> str:
    """SQL: (dimension, dimension_value, since) for 'all' (since NULL: every period) and every
    value of ``dims`` in ``rows`` before ``$end``, since the period of its first day.

    A value has a row for every period from its first one on, so the rows of a day never
    depend on later data and a day computed alone equals the day of a whole-span run.
    """
    parts = ["SELECT 'all' AS dimension, 'all' AS dimension_value, CAST(NULL AS DATE) AS since"]
    parts += [
        f"SELECT '{d}', coalesce(CAST({d} AS VARCHAR), 'unknown'), {_period('min(day)', grain)} "
        f"FROM ({rows}) WHERE day < $end GROUP BY 2"
        for d in dims
    ]
    return "\n        UNION ALL ".join(parts)


def _trends_sql(
    grain: str,
    dims: tuple[str, ...],
    rows: str,
    user_days: str,
    keys: str,
    one_row_per_user: bool = False,
) -> str:
    """One aggregate over ``rows`` (session or user-day rows, see sources.py) of the days
    [$start, $end), with GROUPING SETS over ``dims``, zero-filled over the calendar for every key
    of ``keys`` (dimension, dimension_value, since). A user is new in the period of their first
    day in ``user_days``. ``one_row_per_user``: each group holds a user at most once (user-day
    rows by day), so users are counted without DISTINCT."""
    sets, dim_name, dim_value = dimension_sql(dims)
    users = "count(*)" if one_row_per_user else "count(DISTINCT user_id)"
    return f"""
    WITH src AS (SELECT * FROM ({rows}) WHERE day >= $start AND day < $end),
    first_seen AS (
        SELECT f.* FROM (
            SELECT user_id, min(day) AS first_day FROM ({user_days})
            WHERE day < $end GROUP BY user_id
        ) f SEMI JOIN src USING (user_id)
    ),
    x AS (
        SELECT src.*, {_period("src.day", grain)} AS period,
               {_period("f.first_day", grain)} AS first_period
        FROM src JOIN first_seen f USING (user_id)
    ),
    agg AS (
        SELECT period, {dim_name} AS dimension, {dim_value} AS dimension_value,
               {users} AS active_users,
               {users} FILTER (WHERE first_period = period) AS new_users,
               sum(n_sessions) AS sessions,
               sum(n_converted) AS converted_sessions,
               sum(n_bounced) AS bounced_sessions,
               sum(events) AS events, sum(page_views) AS page_views,
               sum(purchases) AS purchases, {exact_sum("revenue")} AS revenue,
               {exact_sum("duration_s")} AS duration_s
        FROM x GROUP BY GROUPING SETS ({sets})
    ),
    cal AS ({_calendar_sql(grain)}),
    keys AS ({keys})
    SELECT c.period, k.dimension, k.dimension_value,
        coalesce(a.active_users, 0) AS active_users,
        coalesce(a.new_users, 0) AS new_users,
        coalesce(a.active_users - a.new_users, 0) AS returning_users,
        coalesce(a.sessions, 0) AS sessions,
        coalesce(a.converted_sessions, 0) AS converted_sessions,
        coalesce(a.bounced_sessions, 0) AS bounced_sessions,
        coalesce(a.events, 0) AS events,
        coalesce(a.page_views, 0) AS page_views,
        coalesce(a.purchases, 0) AS purchases,
        CAST(coalesce(a.revenue, 0) AS DOUBLE) AS revenue,
        CASE WHEN a.sessions > 0 THEN a.converted_sessions / a.sessions ELSE 0.0 END
            AS conversion_rate,
        CASE WHEN a.sessions > 0 THEN a.bounced_sessions / a.sessions ELSE 0.0 END
            AS bounce_rate,
        CASE WHEN a.sessions > 0 THEN a.duration_s / a.sessions ELSE 0.0 END
            AS mean_session_duration_s,
        CASE WHEN a.sessions > 0 THEN a.page_views / a.sessions ELSE 0.0 END
            AS pages_per_session
    FROM cal c JOIN keys k ON k.since IS NULL OR c.period >= k.since
    LEFT JOIN agg a ON a.period = c.period AND a.dimension = k.dimension
        AND a.dimension_value = k.dimension_value
    ORDER BY 1, 2, 3
    """


def _cast_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        [pl.col(c).cast(pl.Int64) for c in INTEGER_METRICS]
        + [pl.col(c).cast(pl.Float64).fill_nan(0.0).fill_null(0.0) for c in FLOAT_METRICS]
    )


def _empty_trends(period_col: str, extra: dict[str, pl.DataType]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {period_col: pl.Date, **extra}
    schema.update({c: pl.Int64 for c in INTEGER_METRICS})
    schema.update({c: pl.Float64 for c in FLOAT_METRICS})
    schema["is_complete"] = pl.Boolean
    return pl.DataFrame(schema=schema)


def daily_trends(
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
) -> pl.DataFrame:
    """One row per day of [start, end) (every day of the sessions when no window is given) x
    dimension x value (all / device / traffic_source): the sessions that started that day.

    Reads the window's sessions, the user-days before its end (who is new) and the dimension
    values seen before its end, so each day's rows never depend on the days after it.
    """
    start, end = day_window(con, start, end, sessions)
    rows = session_rows(sessions)
    user_days = user_day_rows(con, sessions, user_daily)
    sql = _trends_sql("day", DIMENSIONS, rows, user_days, dimension_keys_sql(DIMENSIONS, rows))
    frame = con.execute(sql, {"start": start, "end": end}).pl()
    frame = _cast_metrics(frame.rename({"period": "day"}))
    bounds = data_bounds(con, sessions, user_daily)
    return frame.with_columns(bounds.day_is_complete())


def _tail_start(
    con: duckdb.DuckDBPyConnection, stored: str, since: date | None, first: date
) -> date | None:
    """The Monday from which to recompute a weekly table whose data changed from ``since`` on:
    the week before since's week (its completeness may have changed too), or None (recompute
    everything) without ``since``, without a stored table, or when that week is the first."""
    if since is None or not table_exists(con, stored):
        return None
    monday = since - timedelta(days=since.weekday() + 7)
    return monday if monday > first else None


def weekly_trends(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
    since: date | None = None,
    stored: str = tables.WEEKLY_TRENDS,
) -> pl.DataFrame:
    """One row per ISO week x dimension x dimension value; distinct counts over the week.

    ``since``: the first day whose sessions changed since ``stored`` (this table as last
    written) was computed. The weeks from the one before since's week on are recomputed and the
    earlier ones kept from ``stored``: a week's rows depend only on the days up to its end, so
    this equals recomputing every week, reading only the recent sessions.
    """
    bounds = data_bounds(con, sessions, user_daily)
    if bounds.empty:
        frame = _empty_trends("week_start", {"dimension": pl.String, "dimension_value": pl.String})
        return frame.with_columns(pl.lit(0, pl.Int32).alias("days_with_data"))
    start, end = day_window(con, None, None, sessions)
    tail = _tail_start(con, stored, since, start)
    params = {"start": tail or start, "end": end}
    rows = session_rows(sessions)
    user_days = user_day_rows(con, sessions, user_daily)
    keys = dimension_keys_sql(DIMENSIONS, rows, "week")
    frame = con.execute(_trends_sql("week", DIMENSIONS, rows, user_days, keys), params).pl()
    frame = _cast_metrics(frame.rename({"period": "week_start"}))
    days = con.execute(
        f"""SELECT CAST(date_trunc('week', day) AS DATE) AS week_start,
                   CAST(count(DISTINCT day) AS INTEGER) AS days_with_data
            FROM ({user_days}) WHERE day >= $start AND day < $end GROUP BY 1""",
        params,
    ).pl()
    frame = frame.join(days, on="week_start", how="left").with_columns(
        pl.col("days_with_data").fill_null(0).cast(pl.Int32), bounds.week_is_complete("week_start")
    )
    if tail is not None:
        kept = con.execute(f"SELECT * FROM {stored} WHERE week_start < ?", [tail]).pl()
        if kept.columns != frame.columns:  # an older layout: recompute every week
            return weekly_trends(con, sessions, user_daily)
        frame = pl.concat([kept.cast(frame.schema), frame])
    return frame.sort("week_start", "dimension", "dimension_value")


def segment_trends(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    segments: str | None = tables.USER_SEGMENTS,
    user_daily: str = tables.USER_DAILY,
    days: int | None = None,
) -> pl.DataFrame:
    """One row per day x segment (plus segment 'all'); per-segment rows need user_segments.

    ``days``: only the last ``days`` days up to the data end (sources.trailing_window), every
    day when None; a day's rows are the same either way. Segments are today's
    (``segments``), so each segment has a row for every day covered. Aggregates the user-days of
    the covered days (a user has one segment), never the sessions when user_daily exists; who
    is new on a day still reads the user ids and days before it.
    """
    start, end = trailing_window(con, days, sessions)
    if start >= end:
        return _empty_trends("day", {"segment_id": pl.String, "segment_name": pl.String})
    bounds = data_bounds(con, sessions, user_daily, since=start)
    user_days = user_day_rows(con, sessions, user_daily)
    params = {"start": start, "end": end}
    segments = use_segments(con, segments)
    if segments:
        window_days = f"SELECT * FROM ({user_days}) WHERE day >= $start AND day < $end"
        rows = (
            f"SELECT u.*, CAST(g.segment_id AS VARCHAR) AS segment FROM ({window_days}) u "
            f"LEFT JOIN {segments} g USING (user_id)"
        )
        keys = (
            "SELECT 'all' AS dimension, 'all' AS dimension_value, CAST(NULL AS DATE) AS since "
            f"UNION ALL SELECT DISTINCT 'segment', CAST(segment_id AS VARCHAR), CAST(NULL AS DATE) "
            f"FROM {segments} WHERE segment_id IS NOT NULL"
        )
        sql = _trends_sql("day", ("segment",), rows, user_days, keys, one_row_per_user=True)
        # Users with no segment only count in 'all'.
        frame = (
            con.execute(sql, params)
            .pl()
            .filter((pl.col("dimension") == "all") | (pl.col("dimension_value") != "unknown"))
        )
    else:
        keys = dimension_keys_sql((), user_days)
        sql = _trends_sql("day", (), user_days, user_days, keys, one_row_per_user=True)
        frame = con.execute(sql, params).pl()
    frame = frame.with_columns(
        pl.when(pl.col("dimension") == "all")
        .then(pl.lit(ALL_SEGMENT_ID))
        .otherwise(pl.col("dimension_value"))
        .alias("segment_id")
    )
    frame = frame.join(segment_labels(con, segments), on="segment_id", how="left").with_columns(
        pl.col("segment_name").fill_null(pl.format("Segment {}", pl.col("segment_id")))
    )
    frame = _cast_metrics(frame.rename({"period": "day"}))
    return frame.select(
        "day",
        "segment_id",
        "segment_name",
        *METRICS,
        bounds.day_is_complete(),
    ).sort("day", "segment_id")


def reconcile_daily(
    con: duckdb.DuckDBPyConnection,
    trends: pl.DataFrame,
    events: str = tables.EVENTS,
    start: date | None = None,
    end: date | None = None,
) -> list[str]:
    """Differences between daily_trends and an independent recount from the raw events.

    The recount reads ``events`` directly (not the sessions table), attributing each event to
    the day its session started, exactly as documented; breakdowns must add up to the totals.
    With a window [start, end) only its days are compared (``trends`` may hold more), reading
    the events of [start - 1 day, end + 1 day) that sessions starting in it can have.
    """
    if (start is None) != (end is None):
        raise ValueError("give both start and end (or neither, for all of the events)")
    read = ""
    params: list[datetime] = []
    if start is not None and end is not None:
        read = "WHERE event_ts >= ? AND event_ts < ?"
        params = [
            datetime.combine(start - timedelta(days=1), datetime.min.time()),
            datetime.combine(end + timedelta(days=1), datetime.min.time()),
        ]
        trends = trends.filter(pl.col("day").is_between(start, end, closed="left"))
    raw = con.execute(
        f"""
        WITH ev AS (SELECT * FROM {events} {read}),
        starts AS (SELECT session_id, CAST(min(event_ts) AS DATE) AS day FROM ev GROUP BY 1)
        SELECT s.day, count(*) AS events,
               count(*) FILTER (WHERE e.event_type = 'page_view') AS page_views,
               count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
               coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'purchase'), 0) AS revenue,
               count(DISTINCT e.user_id) AS active_users,
               count(DISTINCT e.session_id) AS sessions
        FROM ev e JOIN starts s USING (session_id) GROUP BY 1
        """,
        params,
    ).pl()
    if start is not None:
        raw = raw.filter(pl.col("day").is_between(start, end, closed="left"))
    overall = trends.filter(pl.col("dimension") == "all")
    problems: list[str] = []
    joined = overall.join(raw, on="day", how="full", suffix="_raw", coalesce=True)
    for col in ("events", "page_views", "purchases", "active_users", "sessions"):
        bad = joined.filter(pl.col(col).fill_null(0) != pl.col(f"{col}_raw").fill_null(0))
        if bad.height:
            problems.append(f"{col} differs on {bad.height} day(s), first {bad['day'][0]}")
    bad = joined.filter(
        (pl.col("revenue").fill_null(0) - pl.col("revenue_raw").fill_null(0)).abs() > 0.01
    )
    if bad.height:
        problems.append(f"revenue differs on {bad.height} day(s), first {bad['day'][0]}")
    for dim in DIMENSIONS:
        part = (
            trends.filter(pl.col("dimension") == dim)
            .group_by("day")
            .agg(pl.col("events").sum(), pl.col("sessions").sum())
        )
        check = overall.join(part, on="day", how="left", suffix="_dim")
        bad = check.filter(
            (pl.col("events") != pl.col("events_dim").fill_null(0))
            | (pl.col("sessions") != pl.col("sessions_dim").fill_null(0))
        )
        if bad.height:
            problems.append(f"{dim} breakdown does not add up on {bad.height} day(s)")
    return problems
