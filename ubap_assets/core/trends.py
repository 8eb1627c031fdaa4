"""Trends, funnels, retention and lifecycle computed in DuckDB SQL.

Dagster-free. ``build_sessions`` makes the one full pass over the raw ``events`` and writes the
``sessions`` table (one row per session, ~10x smaller); every other function aggregates that
table through a DuckDB connection and returns a polars frame. Table names come from the table
contract, never from outside, so they are the only thing formatted into the SQL.

Conventions (docs/tables/trends.md): a session and all its events belong to the day of its
first event and take that event's device and traffic source; a bounce is a session with exactly
one page_view and no event other than scroll; a user is new on the day (week) of their first
session; rates with a zero denominator are 0.0; every calendar day between the first and the
last day is present (zeros for a day without events).
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

DIMENSIONS: tuple[str, ...] = ("device", "traffic_source")
FUNNEL_STEPS: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "checkout_start",
    "purchase",
)
ALL_SEGMENT_ID = "all"
ALL_SEGMENT_NAME = "All users"
# The metric columns shared by daily_trends, weekly_trends and segment_trends, in order.
METRICS: tuple[str, ...] = (
    "active_users",
    "new_users",
    "returning_users",
    "sessions",
    "converted_sessions",
    "bounced_sessions",
    "events",
    "page_views",
    "purchases",
    "revenue",
    "conversion_rate",
    "bounce_rate",
    "mean_session_duration_s",
    "pages_per_session",
)
_COUNTS = METRICS[:9]
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


def data_bounds(con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS) -> Bounds:
    """First/last day of the data, read from the sessions table (min start, max end)."""
    n, first_ts, last_ts = con.execute(
        f"SELECT sum(events), min(session_start), max(session_end) FROM {sessions}"
    ).fetchone()
    if not n:
        return Bounds(0, None, None, None, ["events is empty: nothing to aggregate"])
    return Bounds(int(n), first_ts.date(), last_ts.date(), last_ts)


# --- sessions: the one pass over the raw events -------------------------------------------

SESSIONS_SQL = """
WITH base AS (
    SELECT session_id, any_value(user_id) AS user_id,
           min(event_ts) AS session_start, max(event_ts) AS session_end,
           arg_min(device, event_ts) AS device, arg_min(traffic_source, event_ts) AS traffic_source,
           count(*) AS events,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           count(*) FILTER (WHERE event_type NOT IN ('page_view', 'scroll')) AS engaged_events,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           coalesce(sum(revenue) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
           min(event_ts) FILTER (WHERE event_type = 'page_view') AS t1,
           min(event_ts) FILTER (
               WHERE event_type = 'page_view' AND list_contains(?, page_id)) AS t2
    FROM {events} GROUP BY session_id
),
x AS (
    SELECT session_id, event_type, event_ts FROM {events}
    WHERE event_type IN ('add_to_cart', 'checkout_start', 'purchase')
),
s3 AS (
    SELECT b.session_id, min(x.event_ts) AS t3 FROM base b JOIN x USING (session_id)
    WHERE x.event_type = 'add_to_cart' AND x.event_ts >= b.t2 GROUP BY 1
),
s4 AS (
    SELECT s3.session_id, min(x.event_ts) AS t4 FROM s3 JOIN x USING (session_id)
    WHERE x.event_type = 'checkout_start' AND x.event_ts >= s3.t3 GROUP BY 1
),
s5 AS (
    SELECT s4.session_id, min(x.event_ts) AS t5 FROM s4 JOIN x USING (session_id)
    WHERE x.event_type = 'purchase' AND x.event_ts >= s4.t4 GROUP BY 1
)
SELECT b.session_id, b.user_id, CAST(b.session_start AS DATE) AS day,
       b.session_start, b.session_end,
       CAST(epoch(b.session_end - b.session_start) AS DOUBLE) AS duration_s,
       b.device, b.traffic_source, b.events, b.page_views, b.engaged_events, b.purchases,
       CAST(b.revenue AS DOUBLE) AS revenue,
       b.page_views = 1 AND b.engaged_events = 0 AS is_bounce,
       b.purchases > 0 AS converted,
       b.t1 IS NOT NULL AS reached_page_view,
       b.t2 IS NOT NULL AS reached_product_view,
       s3.t3 IS NOT NULL AS reached_add_to_cart,
       s4.t4 IS NOT NULL AS reached_checkout_start,
       s5.t5 IS NOT NULL AS reached_purchase
FROM base b LEFT JOIN s3 USING (session_id) LEFT JOIN s4 USING (session_id)
LEFT JOIN s5 USING (session_id)
"""


def product_page_ids(con: duckdb.DuckDBPyConnection, pages: str = tables.PAGES) -> list[str]:
    if not table_exists(con, pages):
        return []
    return [
        r[0]
        for r in con.execute(f"SELECT page_id FROM {pages} WHERE page_type = 'product'").fetchall()
    ]


def build_sessions(
    con: duckdb.DuckDBPyConnection,
    events: str = tables.EVENTS,
    pages: str = tables.PAGES,
    target: str = tables.SESSIONS,
) -> int:
    """(Re)create ``target``: one row per session (the only full scan of the events).

    A session belongs to the day of its first event and takes that event's device and traffic
    source; the funnel flags say which steps it reached in order (each step at or after the
    previous one). Returns the number of sessions.
    """
    if not table_exists(con, events):
        raise LookupError(
            f"table {events!r} does not exist: materialize the events group (or ingest files) "
            "before the trends"
        )
    con.execute(
        f"CREATE OR REPLACE TABLE {target} AS " + SESSIONS_SQL.format(events=events),
        [product_page_ids(con, pages)],
    )
    return int(con.execute(f"SELECT count(*) FROM {target}").fetchone()[0])


# --- trends --------------------------------------------------------------------------------


def _period(expr: str, grain: str) -> str:
    if grain == "day":
        return f"CAST({expr} AS DATE)"
    if grain == "week":
        return f"CAST(date_trunc('week', {expr}) AS DATE)"
    raise ValueError(f"grain must be 'day' or 'week' (got {grain!r})")


def _dimension_sql(dims: tuple[str, ...]) -> tuple[str, str, str]:
    """GROUPING SETS over (period) and (period, dim) for each dim; labels for the outputs."""
    sets = ", ".join(["(period)"] + [f"(period, {d})" for d in dims])
    if not dims:
        return sets, "'all'", "'all'"
    name = " ".join(f"WHEN GROUPING({d}) = 0 THEN '{d}'" for d in dims)
    value = " ".join(
        f"WHEN GROUPING({d}) = 0 THEN coalesce(CAST({d} AS VARCHAR), 'unknown')" for d in dims
    )
    return sets, f"CASE {name} ELSE 'all' END", f"CASE {value} ELSE 'all' END"


def _trends_sql(grain: str, dims: tuple[str, ...], source: str, sessions: str) -> str:
    """One aggregate over sessions with grouping sets, zero-filled over the calendar."""
    sets, dim_name, dim_value = _dimension_sql(dims)
    step = "INTERVAL 1 DAY" if grain == "day" else "INTERVAL 7 DAY"
    return f"""
    WITH first_seen AS (SELECT user_id, min(day) AS first_day FROM {sessions} GROUP BY user_id),
    x AS (
        SELECT s.*, {_period("s.day", grain)} AS period,
               {_period("f.first_day", grain)} AS first_period
        FROM {source} s JOIN first_seen f USING (user_id)
    ),
    agg AS (
        SELECT period, {dim_name} AS dimension, {dim_value} AS dimension_value,
               count(DISTINCT user_id) AS active_users,
               count(DISTINCT user_id) FILTER (WHERE first_period = period) AS new_users,
               count(*) AS sessions,
               count(*) FILTER (WHERE converted) AS converted_sessions,
               count(*) FILTER (WHERE is_bounce) AS bounced_sessions,
               sum(events) AS events, sum(page_views) AS page_views,
               sum(purchases) AS purchases, sum(revenue) AS revenue,
               sum(duration_s) AS duration_s
        FROM x GROUP BY GROUPING SETS ({sets})
    ),
    cal AS (
        SELECT CAST(unnest(range(
            (SELECT {_period("min(day)", grain)} FROM {sessions}),
            (SELECT {_period("max(day)", grain)} FROM {sessions}) + {step},
            {step})) AS DATE) AS period
    ),
    keys AS (
        SELECT DISTINCT dimension, dimension_value FROM agg UNION SELECT 'all', 'all'
    )
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
    FROM cal c CROSS JOIN keys k
    LEFT JOIN agg a ON a.period = c.period AND a.dimension = k.dimension
        AND a.dimension_value = k.dimension_value
    ORDER BY 1, 2, 3
    """


def _int_cols(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        [pl.col(c).cast(pl.Int64) for c in _COUNTS]
        + [pl.col(c).cast(pl.Float64).fill_nan(0.0).fill_null(0.0) for c in METRICS[9:]]
    )


def _empty_trends(period_col: str, extra: dict[str, pl.DataType]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {period_col: pl.Date, **extra}
    schema.update({c: pl.Int64 for c in _COUNTS})
    schema.update({c: pl.Float64 for c in METRICS[9:]})
    schema["is_complete"] = pl.Boolean
    return pl.DataFrame(schema=schema)


def daily_trends(con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS) -> pl.DataFrame:
    """One row per day x dimension x dimension value (all / device / traffic_source)."""
    bounds = data_bounds(con, sessions)
    if bounds.empty:
        return _empty_trends("day", {"dimension": pl.String, "dimension_value": pl.String})
    frame = con.execute(_trends_sql("day", DIMENSIONS, sessions, sessions)).pl()
    frame = _int_cols(frame.rename({"period": "day"}))
    return frame.with_columns((pl.col("day") <= bounds.last_complete_day).alias("is_complete"))


def weekly_trends(con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS) -> pl.DataFrame:
    """One row per ISO week x dimension x dimension value; distinct counts over the week."""
    bounds = data_bounds(con, sessions)
    if bounds.empty:
        frame = _empty_trends("week_start", {"dimension": pl.String, "dimension_value": pl.String})
        return frame.with_columns(pl.lit(0, pl.Int32).alias("days_with_data"))
    frame = con.execute(_trends_sql("week", DIMENSIONS, sessions, sessions)).pl()
    frame = _int_cols(frame.rename({"period": "week_start"}))
    days = con.execute(
        f"""SELECT CAST(date_trunc('week', day) AS DATE) AS week_start,
                   CAST(count(DISTINCT day) AS INTEGER) AS days_with_data
            FROM {sessions} GROUP BY 1"""
    ).pl()
    frame = frame.join(days, on="week_start", how="left").with_columns(
        pl.col("days_with_data").fill_null(0).cast(pl.Int32)
    )
    complete = (pl.col("week_start") >= bounds.first_day) & (
        pl.col("week_start") + pl.duration(days=6) <= pl.lit(bounds.last_complete_day)
    )
    return frame.with_columns(complete.alias("is_complete"))


def _segments_source(sessions: str, segments: str) -> str:
    return (
        f"(SELECT s.*, CAST(g.segment_id AS VARCHAR) AS segment FROM {sessions} s "
        f"LEFT JOIN {segments} g USING (user_id))"
    )


def segment_names(con: duckdb.DuckDBPyConnection, segments: str) -> pl.DataFrame:
    return con.execute(
        f"""SELECT CAST(segment_id AS VARCHAR) AS segment_id,
                   coalesce(any_value(segment_name), 'Segment ' || CAST(segment_id AS VARCHAR))
                       AS segment_name
            FROM {segments} WHERE segment_id IS NOT NULL GROUP BY segment_id"""
    ).pl()


def _names(con: duckdb.DuckDBPyConnection, segments: str | None) -> pl.DataFrame:
    names = pl.DataFrame({"segment_id": [ALL_SEGMENT_ID], "segment_name": [ALL_SEGMENT_NAME]})
    if segments is not None:
        names = pl.concat([names, segment_names(con, segments)])
    return names


def use_segments(con: duckdb.DuckDBPyConnection, segments: str | None) -> str | None:
    """The segments table when it exists, else None (then only segment 'all' is produced)."""
    return segments if segments is not None and table_exists(con, segments) else None


def segment_trends(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    segments: str | None = tables.USER_SEGMENTS,
) -> pl.DataFrame:
    """One row per day x segment (plus segment 'all'); per-segment rows need user_segments."""
    bounds = data_bounds(con, sessions)
    if bounds.empty:
        return _empty_trends("day", {"segment_id": pl.String, "segment_name": pl.String})
    segments = use_segments(con, segments)
    if segments:
        sql = _trends_sql("day", ("segment",), _segments_source(sessions, segments), sessions)
        # Users with no segment only count in 'all'.
        frame = (
            con.execute(sql)
            .pl()
            .filter((pl.col("dimension") == "all") | (pl.col("dimension_value") != "unknown"))
        )
    else:
        frame = con.execute(_trends_sql("day", (), sessions, sessions)).pl()
    frame = frame.with_columns(
        pl.when(pl.col("dimension") == "all")
        .then(pl.lit(ALL_SEGMENT_ID))
        .otherwise(pl.col("dimension_value"))
        .alias("segment_id")
    )
    frame = frame.join(_names(con, segments), on="segment_id", how="left").with_columns(
        pl.col("segment_name").fill_null(pl.format("Segment {}", pl.col("segment_id")))
    )
    frame = _int_cols(frame.rename({"period": "day"}))
    return frame.select(
        "day",
        "segment_id",
        "segment_name",
        *METRICS,
        (pl.col("day") <= bounds.last_complete_day).alias("is_complete"),
    ).sort("day", "segment_id")


# --- funnels -------------------------------------------------------------------------------

_REACHED = ", ".join(
    f"count(*) FILTER (WHERE reached_{step}) AS reached_{i}"
    for i, step in enumerate(FUNNEL_STEPS, start=1)
)


def _funnel_long(wide: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """From one row per key with reached_1..5 to one row per key x step with conversions."""
    wide = wide.with_columns([pl.col(f"reached_{i}").cast(pl.Float64) for i in range(1, 6)])
    first = pl.col("reached_1")
    parts = []
    for i, step in enumerate(FUNNEL_STEPS, start=1):
        cur = pl.col(f"reached_{i}")
        prev = pl.col(f"reached_{i - 1}") if i > 1 else cur
        parts.append(
            wide.select(
                *keys,
                pl.lit(i, pl.Int32).alias("step_index"),
                pl.lit(step).alias("step"),
                cur.cast(pl.Int64).alias("sessions"),
                pl.when(prev > 0).then(cur / prev).otherwise(0.0).alias("step_conversion"),
                pl.when(first > 0).then(cur / first).otherwise(0.0).alias("overall_conversion"),
                (prev - cur).cast(pl.Int64).alias("drop_off"),
                pl.when(prev > 0).then((prev - cur) / prev).otherwise(0.0).alias("drop_off_rate"),
            )
        )
    return pl.concat(parts).sort(*keys, "step_index")


def _day_grid(bounds: Bounds) -> pl.DataFrame:
    return pl.DataFrame({"day": pl.date_range(bounds.first_day, bounds.last_day, "1d", eager=True)})


_FUNNEL_SCHEMA: dict[str, pl.DataType] = {
    "step_index": pl.Int32,
    "step": pl.String,
    "sessions": pl.Int64,
    "step_conversion": pl.Float64,
    "overall_conversion": pl.Float64,
    "drop_off": pl.Int64,
    "drop_off_rate": pl.Float64,
    "is_complete": pl.Boolean,
}


def funnel_daily(con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS) -> pl.DataFrame:
    """One row per day x funnel step (ordered funnel over sessions starting that day)."""
    bounds = data_bounds(con, sessions)
    if bounds.empty:
        return pl.DataFrame(schema={"day": pl.Date, **_FUNNEL_SCHEMA})
    wide = con.execute(f"SELECT day, {_REACHED} FROM {sessions} GROUP BY day").pl()
    wide = _day_grid(bounds).join(wide, on="day", how="left").fill_null(0)
    out = _funnel_long(wide, ["day"])
    return out.with_columns((pl.col("day") <= bounds.last_complete_day).alias("is_complete"))


def funnel_segments(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    segments: str | None = tables.USER_SEGMENTS,
) -> pl.DataFrame:
    """One row per day x segment x funnel step; segment 'all' always, others need segments."""
    bounds = data_bounds(con, sessions)
    seg_schema = {"day": pl.Date, "segment_id": pl.String, "segment_name": pl.String}
    if bounds.empty:
        return pl.DataFrame(schema={**seg_schema, **_FUNNEL_SCHEMA})
    segments = use_segments(con, segments)
    if segments:
        sql = f"""
        SELECT s.day, coalesce(CAST(g.segment_id AS VARCHAR), '{ALL_SEGMENT_ID}') AS segment_id,
               {_REACHED}
        FROM {sessions} s LEFT JOIN {segments} g USING (user_id)
        GROUP BY GROUPING SETS ((s.day), (s.day, g.segment_id))
        HAVING GROUPING(g.segment_id) = 1 OR g.segment_id IS NOT NULL
        """
    else:
        sql = f"SELECT day, '{ALL_SEGMENT_ID}' AS segment_id, {_REACHED} FROM {sessions} GROUP BY 1"
    wide = con.execute(sql).pl()
    grid = _day_grid(bounds).join(_names(con, segments), how="cross")
    wide = grid.join(wide, on=["day", "segment_id"], how="left").fill_null(0)
    out = _funnel_long(wide, ["day", "segment_id", "segment_name"])
    return out.with_columns((pl.col("day") <= bounds.last_complete_day).alias("is_complete"))


# --- retention and lifecycle ---------------------------------------------------------------


def _week_complete(bounds: Bounds) -> pl.Expr:
    """A week is complete when all its 7 days lie inside the complete data."""
    return (pl.col("_week") >= pl.lit(bounds.first_day)) & (
        pl.col("_week") + pl.duration(days=6) <= pl.lit(bounds.last_complete_day)
    )


def _user_weeks(sessions: str) -> str:
    return f"""
        ua AS (
            SELECT DISTINCT user_id, CAST(date_trunc('week', day) AS DATE) AS wk FROM {sessions}
        ),
        c AS (SELECT user_id, min(wk) AS cohort_week FROM ua GROUP BY user_id)"""


def retention_cohorts(
    con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS
) -> pl.DataFrame:
    """One row per weekly first-seen cohort x weeks since (zero-filled)."""
    bounds = data_bounds(con, sessions)
    schema = {
        "cohort_week": pl.Date,
        "weeks_since": pl.Int32,
        "cohort_size": pl.Int64,
        "active_users": pl.Int64,
        "retention_rate": pl.Float64,
        "is_complete": pl.Boolean,
    }
    if bounds.empty:
        return pl.DataFrame(schema=schema)
    frame = con.execute(
        f"""
        WITH {_user_weeks(sessions)},
        sizes AS (SELECT cohort_week, count(*) AS cohort_size FROM c GROUP BY 1),
        last AS (SELECT max(wk) AS last_wk FROM ua),
        grid AS (
            SELECT cohort_week, cohort_size,
                   CAST(unnest(range(0, CAST(datediff('week', cohort_week, last_wk) AS BIGINT)
                       + 1)) AS INTEGER) AS weeks_since
            FROM sizes, last
        ),
        act AS (
            SELECT c.cohort_week, CAST(datediff('week', c.cohort_week, ua.wk) AS INTEGER)
                       AS weeks_since, count(*) AS active_users
            FROM ua JOIN c USING (user_id) GROUP BY 1, 2
        )
        SELECT g.cohort_week, g.weeks_since, g.cohort_size,
               coalesce(a.active_users, 0) AS active_users
        FROM grid g LEFT JOIN act a USING (cohort_week, weeks_since)
        ORDER BY 1, 2
        """
    ).pl()
    return (
        frame.with_columns(
            pl.col("cohort_size").cast(pl.Int64),
            pl.col("active_users").cast(pl.Int64),
            pl.when(pl.col("cohort_size") > 0)
            .then(pl.col("active_users") / pl.col("cohort_size"))
            .otherwise(0.0)
            .alias("retention_rate"),
            (pl.col("cohort_week") + pl.duration(weeks=pl.col("weeks_since"))).alias("_week"),
        )
        .with_columns(_week_complete(bounds).alias("is_complete"))
        .drop("_week")
        .cast(schema)
    )


LIFECYCLE_STATES: tuple[str, ...] = ("new", "returning", "resurrecting", "dormant")


def lifecycle_weekly(
    con: duckdb.DuckDBPyConnection, sessions: str = tables.SESSIONS
) -> pl.DataFrame:
    """One row per week x lifecycle state (new, returning, resurrecting, dormant)."""
    bounds = data_bounds(con, sessions)
    schema = {
        "week_start": pl.Date,
        "state": pl.String,
        "users": pl.Int64,
        "signed_users": pl.Int64,
        "quick_ratio": pl.Float64,
        "is_complete": pl.Boolean,
    }
    if bounds.empty:
        return pl.DataFrame(schema=schema)
    counts = con.execute(
        f"""
        WITH {_user_weeks(sessions)},
        prev AS (SELECT user_id, CAST(wk + INTERVAL 7 DAY AS DATE) AS wk FROM ua),
        j AS (
            SELECT coalesce(cur.wk, prev.wk) AS week_start,
                   coalesce(cur.user_id, prev.user_id) AS user_id,
                   cur.user_id IS NOT NULL AS active_now, prev.user_id IS NOT NULL AS active_before
            FROM ua cur FULL OUTER JOIN prev ON cur.user_id = prev.user_id AND cur.wk = prev.wk
        )
        SELECT week_start,
               CASE WHEN NOT active_now THEN 'dormant'
                    WHEN active_before THEN 'returning'
                    WHEN c.cohort_week = j.week_start THEN 'new'
                    ELSE 'resurrecting' END AS state,
               count(*) AS users
        FROM j JOIN c USING (user_id)
        WHERE week_start <= (SELECT max(wk) FROM ua)
        GROUP BY 1, 2
        """
    ).pl()
    first_week = bounds.first_day - timedelta(days=bounds.first_day.weekday())
    weeks = pl.DataFrame(
        {"week_start": pl.date_range(first_week, bounds.last_day, "1w", eager=True)}
    )
    grid = weeks.join(pl.DataFrame({"state": list(LIFECYCLE_STATES)}), how="cross")
    frame = grid.join(counts, on=["week_start", "state"], how="left").with_columns(
        pl.col("users").fill_null(0).cast(pl.Int64)
    )
    ratio = frame.group_by("week_start").agg(
        pl.col("users").filter(pl.col("state").is_in(["new", "resurrecting"])).sum().alias("_up"),
        pl.col("users").filter(pl.col("state") == "dormant").sum().alias("_down"),
    )
    frame = frame.join(ratio, on="week_start", how="left").with_columns(
        pl.when(pl.col("_down") > 0)
        .then(pl.col("_up") / pl.col("_down"))
        .otherwise(0.0)
        .alias("quick_ratio"),
        pl.when(pl.col("state") == "dormant")
        .then(-pl.col("users"))
        .otherwise(pl.col("users"))
        .alias("signed_users"),
        pl.col("week_start").alias("_week"),
    )
    frame = frame.with_columns(_week_complete(bounds).alias("is_complete"))
    order = {s: i for i, s in enumerate(LIFECYCLE_STATES)}
    return (
        frame.with_columns(pl.col("state").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
        .sort("week_start", "_o")
        .select(list(schema))
        .cast(schema)
    )


# --- reconciliation ------------------------------------------------------------------------


def reconcile_daily(
    con: duckdb.DuckDBPyConnection, trends: pl.DataFrame, events: str = tables.EVENTS
) -> list[str]:
    """Differences between daily_trends and an independent recount from the raw events.

    The recount reads ``events`` directly (not the sessions table), attributing each event to
    the day its session started, exactly as documented; breakdowns must add up to the totals.
    """
    raw = con.execute(
        f"""
        WITH starts AS (
            SELECT session_id, CAST(min(event_ts) AS DATE) AS day FROM {events} GROUP BY 1
        )
        SELECT s.day, count(*) AS events,
               count(*) FILTER (WHERE e.event_type = 'page_view') AS page_views,
               count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
               coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'purchase'), 0) AS revenue,
               count(DISTINCT e.user_id) AS active_users,
               count(DISTINCT e.session_id) AS sessions
        FROM {events} e JOIN starts s USING (session_id) GROUP BY 1
        """
    ).pl()
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
