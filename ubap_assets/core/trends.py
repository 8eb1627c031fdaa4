"""Trends, funnels, retention and lifecycle computed in DuckDB SQL over the events table.

Dagster-free: every function takes a DuckDB connection that holds ``events`` (and ``pages`` /
``user_segments`` where needed) and returns a polars frame. Table names come from the table
contract, never from outside, so they are the only thing formatted into the SQL.

Conventions (docs/tables/trends.md): a session belongs to the day of its first event and takes
that event's device and traffic source; a bounce is a session with exactly one page_view and no
event other than scroll; a user is new on the day (week) of their first event ever; rates with a
zero denominator are 0.0; every calendar day between the first and last event day is present.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.warehouse import tables

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


def data_bounds(con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS) -> Bounds:
    n, first_ts, last_ts = con.execute(
        f"SELECT count(*), min(event_ts), max(event_ts) FROM {events}"
    ).fetchone()
    if not n:
        return Bounds(0, None, None, None, ["events is empty: nothing to aggregate"])
    return Bounds(int(n), first_ts.date(), last_ts.date(), last_ts)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def _period(expr: str, grain: str) -> str:
    if grain == "day":
        return f"CAST({expr} AS DATE)"
    if grain == "week":
        return f"CAST(date_trunc('week', {expr}) AS DATE)"
    raise ValueError(f"grain must be 'day' or 'week' (got {grain!r})")


def _dimension_sql(dims: tuple[str, ...]) -> tuple[str, str, str]:
    """GROUPING SETS over (period) and (period, dim) for each dim; labels for the outputs."""
    sets = ", ".join(["(period)"] + [f"(period, {d})" for d in dims])
    name = " ".join(f"WHEN GROUPING({d}) = 0 THEN '{d}'" for d in dims)
    value = " ".join(f"WHEN GROUPING({d}) = 0 THEN coalesce(CAST({d} AS VARCHAR), 'unknown')"
                     for d in dims)
    if dims:
        return (
            sets,
            f"CASE {name} ELSE 'all' END",
            f"CASE {value} ELSE 'all' END",
        )
    return sets, "'all'", "'all'"


def _trends_sql(grain: str, dims: tuple[str, ...], source: str, events: str) -> str:
    """One statement: per-user pre-aggregate, per-session aggregate, grouping sets, fill gaps."""
    sets, dim_name, dim_value = _dimension_sql(dims)
    dim_cols = "".join(f", {d}" for d in dims)
    p_ev = _period("event_ts", grain)
    p_first = _period("first_ts", grain)
    p_sess = _period("s_start", grain)
    step = "INTERVAL 1 DAY" if grain == "day" else "INTERVAL 7 DAY"
    return f"""
    WITH src AS (SELECT * FROM {source}),
    first_seen AS (SELECT user_id, min(event_ts) AS first_ts FROM {events} GROUP BY user_id),
    user_period AS (
        SELECT user_id, {p_ev} AS period{dim_cols},
               count(*) AS n_events,
               count(*) FILTER (WHERE event_type = 'page_view') AS n_pv,
               count(*) FILTER (WHERE event_type = 'purchase') AS n_purchase,
               sum(revenue) FILTER (WHERE event_type = 'purchase') AS revenue
        FROM src GROUP BY ALL
    ),
    ev AS (
        SELECT up.period, {dim_name} AS dimension, {dim_value} AS dimension_value,
               count(DISTINCT up.user_id) AS active_users,
               count(DISTINCT up.user_id) FILTER (WHERE {p_first} = up.period) AS new_users,
               sum(n_events) AS events, sum(n_pv) AS page_views,
               sum(n_purchase) AS purchases, coalesce(sum(up.revenue), 0) AS revenue
        FROM user_period up JOIN first_seen f USING (user_id)
        GROUP BY GROUPING SETS ({sets})
    ),
    sess AS (
        SELECT session_id, min(event_ts) AS s_start,
               epoch(max(event_ts) - min(event_ts)) AS duration_s,
               {", ".join(f"arg_min({d}, event_ts) AS {d}" for d in dims) or "1 AS _"},
               count(*) FILTER (WHERE event_type = 'page_view') AS n_pv,
               count(*) FILTER (WHERE event_type NOT IN ('page_view', 'scroll')) AS n_engaged,
               bool_or(event_type = 'purchase') AS converted
        FROM src GROUP BY session_id
    ),
    se AS (
        SELECT {p_sess} AS period{dim_cols}, n_pv, n_engaged, converted, duration_s FROM sess
    ),
    sa AS (
        SELECT period, {dim_name} AS dimension, {dim_value} AS dimension_value,
               count(*) AS sessions,
               count(*) FILTER (WHERE converted) AS converted_sessions,
               count(*) FILTER (WHERE n_pv = 1 AND n_engaged = 0) AS bounced_sessions,
               sum(duration_s) AS duration_s, sum(n_pv) AS session_pv
        FROM se GROUP BY GROUPING SETS ({sets})
    ),
    cal AS (
        SELECT CAST(unnest(range(
            (SELECT {_period("min(event_ts)", grain)} FROM {events}),
            (SELECT {_period("max(event_ts)", grain)} FROM {events}) + {step},
            {step})) AS DATE) AS period
    ),
    keys AS (
        SELECT DISTINCT dimension, dimension_value FROM ev
        UNION SELECT DISTINCT dimension, dimension_value FROM sa
        UNION SELECT 'all', 'all'
    ),
    grid AS (SELECT * FROM cal CROSS JOIN keys)
    SELECT g.period, g.dimension, g.dimension_value,
        coalesce(ev.active_users, 0) AS active_users,
        coalesce(ev.new_users, 0) AS new_users,
        coalesce(ev.active_users - ev.new_users, 0) AS returning_users,
        coalesce(sa.sessions, 0) AS sessions,
        coalesce(sa.converted_sessions, 0) AS converted_sessions,
        coalesce(sa.bounced_sessions, 0) AS bounced_sessions,
        coalesce(ev.events, 0) AS events,
        coalesce(ev.page_views, 0) AS page_views,
        coalesce(ev.purchases, 0) AS purchases,
        CAST(coalesce(ev.revenue, 0) AS DOUBLE) AS revenue,
        CASE WHEN sa.sessions > 0 THEN sa.converted_sessions / sa.sessions ELSE 0.0 END
            AS conversion_rate,
        CASE WHEN sa.sessions > 0 THEN sa.bounced_sessions / sa.sessions ELSE 0.0 END
            AS bounce_rate,
        CASE WHEN sa.sessions > 0 THEN sa.duration_s / sa.sessions ELSE 0.0 END
            AS mean_session_duration_s,
        CASE WHEN sa.sessions > 0 THEN sa.session_pv / sa.sessions ELSE 0.0 END
            AS pages_per_session
    FROM grid g
    LEFT JOIN ev USING (period, dimension, dimension_value)
    LEFT JOIN sa USING (period, dimension, dimension_value)
    ORDER BY g.period, g.dimension, g.dimension_value
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


def daily_trends(con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS) -> pl.DataFrame:
    """One row per day x dimension x dimension value (all / device / traffic_source)."""
    bounds = data_bounds(con, events)
    if bounds.empty:
        return _empty_trends("day", {"dimension": pl.String, "dimension_value": pl.String})
    frame = con.execute(_trends_sql("day", DIMENSIONS, events, events)).pl()
    frame = _int_cols(frame.rename({"period": "day"}))
    return frame.with_columns(
        (pl.col("day") <= bounds.last_complete_day).alias("is_complete")
    )


def weekly_trends(con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS) -> pl.DataFrame:
    """One row per ISO week x dimension x dimension value; distinct counts over the week."""
    bounds = data_bounds(con, events)
    if bounds.empty:
        frame = _empty_trends("week_start", {"dimension": pl.String, "dimension_value": pl.String})
        return frame.with_columns(pl.lit(0, pl.Int32).alias("days_with_data")).head(0)
    frame = con.execute(_trends_sql("week", DIMENSIONS, events, events)).pl()
    frame = _int_cols(frame.rename({"period": "week_start"}))
    days = con.execute(
        f"""SELECT CAST(date_trunc('week', d) AS DATE) AS week_start,
                   CAST(count(*) AS INTEGER) AS days_with_data
            FROM (SELECT DISTINCT CAST(event_ts AS DATE) AS d FROM {events}) GROUP BY 1"""
    ).pl()
    frame = frame.join(days, on="week_start", how="left").with_columns(
        pl.col("days_with_data").fill_null(0).cast(pl.Int32)
    )
    complete = (
        (pl.col("week_start") >= bounds.first_day)
        & (pl.col("week_start") + pl.duration(days=6) <= pl.lit(bounds.last_complete_day))
    )
    return frame.with_columns(complete.alias("is_complete"))


def _segments_source(events: str, segments: str) -> str:
    return (
        f"(SELECT e.*, CAST(s.segment_id AS VARCHAR) AS segment FROM {events} e "
        f"LEFT JOIN {segments} s USING (user_id))"
    )


def segment_names(con: duckdb.DuckDBPyConnection, segments: str) -> pl.DataFrame:
    return con.execute(
        f"""SELECT CAST(segment_id AS VARCHAR) AS segment_id,
                   coalesce(any_value(segment_name), 'Segment ' || CAST(segment_id AS VARCHAR))
                       AS segment_name
            FROM {segments} GROUP BY segment_id"""
    ).pl()


def segment_trends(
    con: duckdb.DuckDBPyConnection,
    events: str = tables.EVENTS,
    segments: str | None = tables.USER_SEGMENTS,
) -> pl.DataFrame:
    """One row per day x segment (plus segment 'all'); per-segment rows need user_segments."""
    bounds = data_bounds(con, events)
    seg_cols = {"segment_id": pl.String, "segment_name": pl.String}
    if bounds.empty:
        return _empty_trends("day", seg_cols)
    use_segments = segments is not None and table_exists(con, segments)
    if use_segments:
        frame = con.execute(
            _trends_sql("day", ("segment",), _segments_source(events, segments), events)
        ).pl()
        # Users with no segment only count in 'all'.
        frame = frame.filter(
            (pl.col("dimension") == "all") | (pl.col("dimension_value") != "unknown")
        )
    else:
        frame = con.execute(_trends_sql("day", (), events, events)).pl()
    frame = frame.with_columns(
        pl.when(pl.col("dimension") == "all")
        .then(pl.lit(ALL_SEGMENT_ID))
        .otherwise(pl.col("dimension_value"))
        .alias("segment_id")
    )
    names = pl.DataFrame({"segment_id": [ALL_SEGMENT_ID], "segment_name": [ALL_SEGMENT_NAME]})
    if use_segments:
        names = pl.concat([names, segment_names(con, segments)])
    frame = frame.join(names, on="segment_id", how="left").with_columns(
        pl.col("segment_name").fill_null(pl.format("Segment {}", pl.col("segment_id")))
    )
    frame = _int_cols(frame.rename({"period": "day"}))
    return frame.select(
        "day", "segment_id", "segment_name", *METRICS,
        (pl.col("day") <= bounds.last_complete_day).alias("is_complete"),
    ).sort("day", "segment_id")


# --- funnels -------------------------------------------------------------------------------


def _funnel_sessions_sql(events: str, pages: str) -> str:
    """One row per session with a page view: start day, user, time each step was reached."""
    return f"""
    WITH s AS (
        SELECT e.session_id, arg_min(e.user_id, e.event_ts) AS user_id,
               CAST(min(e.event_ts) AS DATE) AS day,
               min(e.event_ts) FILTER (WHERE e.event_type = 'page_view') AS t1,
               min(e.event_ts) FILTER (
                   WHERE e.event_type = 'page_view' AND p.page_type = 'product') AS t2
        FROM {events} e LEFT JOIN {pages} p USING (page_id)
        GROUP BY e.session_id
    ),
    s1 AS (SELECT * FROM s WHERE t1 IS NOT NULL),
    x AS (
        SELECT session_id, event_type, event_ts FROM {events}
        WHERE event_type IN ('add_to_cart', 'checkout_start', 'purchase')
    ),
    s3 AS (
        SELECT s1.session_id, min(x.event_ts) AS t3 FROM s1 JOIN x USING (session_id)
        WHERE x.event_type = 'add_to_cart' AND x.event_ts >= s1.t2 GROUP BY 1
    ),
    s4 AS (
        SELECT s3.session_id, min(x.event_ts) AS t4 FROM s3 JOIN x USING (session_id)
        WHERE x.event_type = 'checkout_start' AND x.event_ts >= s3.t3 GROUP BY 1
    ),
    s5 AS (
        SELECT s4.session_id, min(x.event_ts) AS t5 FROM s4 JOIN x USING (session_id)
        WHERE x.event_type = 'purchase' AND x.event_ts >= s4.t4 GROUP BY 1
    )
    SELECT s1.session_id, s1.user_id, s1.day,
           1 AS r1, CAST(t2 IS NOT NULL AS INTEGER) AS r2,
           CAST(t3 IS NOT NULL AS INTEGER) AS r3, CAST(t4 IS NOT NULL AS INTEGER) AS r4,
           CAST(t5 IS NOT NULL AS INTEGER) AS r5
    FROM s1 LEFT JOIN s3 USING (session_id) LEFT JOIN s4 USING (session_id)
    LEFT JOIN s5 USING (session_id)
    """


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
    return pl.DataFrame(
        {"day": pl.date_range(bounds.first_day, bounds.last_day, "1d", eager=True)}
    )


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


def funnel_daily(
    con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS, pages: str = tables.PAGES
) -> pl.DataFrame:
    """One row per day x funnel step (ordered funnel over sessions starting that day)."""
    bounds = data_bounds(con, events)
    if bounds.empty:
        return pl.DataFrame(schema={"day": pl.Date, **_FUNNEL_SCHEMA})
    reached = ", ".join(f"sum(r{i}) AS reached_{i}" for i in range(1, 6))
    wide = con.execute(
        f"SELECT day, {reached} FROM ({_funnel_sessions_sql(events, pages)}) GROUP BY day"
    ).pl()
    wide = _day_grid(bounds).join(wide, on="day", how="left").fill_null(0)
    out = _funnel_long(wide, ["day"])
    return out.with_columns((pl.col("day") <= bounds.last_complete_day).alias("is_complete"))


def funnel_segments(
    con: duckdb.DuckDBPyConnection,
    events: str = tables.EVENTS,
    pages: str = tables.PAGES,
    segments: str | None = tables.USER_SEGMENTS,
) -> pl.DataFrame:
    """One row per day x segment x funnel step; segment 'all' always, others need segments."""
    bounds = data_bounds(con, events)
    seg_schema = {"day": pl.Date, "segment_id": pl.String, "segment_name": pl.String}
    if bounds.empty:
        return pl.DataFrame(schema={**seg_schema, **_FUNNEL_SCHEMA})
    use_segments = segments is not None and table_exists(con, segments)
    reached = ", ".join(f"sum(r{i}) AS reached_{i}" for i in range(1, 6))
    inner = _funnel_sessions_sql(events, pages)
    if use_segments:
        sql = f"""
        SELECT f.day, coalesce(CAST(s.segment_id AS VARCHAR), '{ALL_SEGMENT_ID}') AS segment_id,
               {reached}
        FROM ({inner}) f LEFT JOIN {segments} s USING (user_id)
        GROUP BY GROUPING SETS ((f.day), (f.day, s.segment_id))
        HAVING GROUPING(s.segment_id) = 1 OR s.segment_id IS NOT NULL
        """
    else:
        sql = f"SELECT day, '{ALL_SEGMENT_ID}' AS segment_id, {reached} FROM ({inner}) GROUP BY 1"
    wide = con.execute(sql).pl()
    names = pl.DataFrame({"segment_id": [ALL_SEGMENT_ID], "segment_name": [ALL_SEGMENT_NAME]})
    if use_segments:
        names = pl.concat([names, segment_names(con, segments)])
    grid = _day_grid(bounds).join(names, how="cross")
    wide = grid.join(wide, on=["day", "segment_id"], how="left").fill_null(0)
    out = _funnel_long(wide, ["day", "segment_id", "segment_name"])
    return out.with_columns((pl.col("day") <= bounds.last_complete_day).alias("is_complete"))


# --- retention and lifecycle ---------------------------------------------------------------


def _week_complete(bounds: Bounds) -> pl.Expr:
    """A week is complete when all its 7 days lie inside the complete data."""
    return (pl.col("_week") >= pl.lit(bounds.first_day)) & (
        pl.col("_week") + pl.duration(days=6) <= pl.lit(bounds.last_complete_day)
    )


def retention_cohorts(
    con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS
) -> pl.DataFrame:
    """One row per weekly first-seen cohort x weeks since (zero-filled)."""
    bounds = data_bounds(con, events)
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
        WITH ua AS (
            SELECT DISTINCT user_id, CAST(date_trunc('week', event_ts) AS DATE) AS wk
            FROM {events}
        ),
        c AS (SELECT user_id, min(wk) AS cohort_week FROM ua GROUP BY user_id),
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
    return frame.with_columns(
        pl.col("cohort_size").cast(pl.Int64),
        pl.col("active_users").cast(pl.Int64),
        pl.when(pl.col("cohort_size") > 0)
        .then(pl.col("active_users") / pl.col("cohort_size"))
        .otherwise(0.0)
        .alias("retention_rate"),
        (pl.col("cohort_week") + pl.duration(weeks=pl.col("weeks_since"))).alias("_week"),
    ).with_columns(_week_complete(bounds).alias("is_complete")).drop("_week").cast(schema)


LIFECYCLE_STATES: tuple[str, ...] = ("new", "returning", "resurrecting", "dormant")


def lifecycle_weekly(
    con: duckdb.DuckDBPyConnection, events: str = tables.EVENTS
) -> pl.DataFrame:
    """One row per week x lifecycle state (new, returning, resurrecting, dormant)."""
    bounds = data_bounds(con, events)
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
        WITH ua AS (
            SELECT DISTINCT user_id, CAST(date_trunc('week', event_ts) AS DATE) AS wk
            FROM {events}
        ),
        c AS (SELECT user_id, min(wk) AS cohort_week FROM ua GROUP BY user_id),
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
    weeks = pl.DataFrame(
        {
            "week_start": pl.date_range(
                bounds.first_day - timedelta(days=bounds.first_day.weekday()),
                bounds.last_day,
                "1w",
                eager=True,
            )
        }
    )
    grid = weeks.join(pl.DataFrame({"state": list(LIFECYCLE_STATES)}), how="cross")
    frame = grid.join(counts, on=["week_start", "state"], how="left").with_columns(
        pl.col("users").fill_null(0).cast(pl.Int64)
    )
    ratio = frame.group_by("week_start").agg(
        (
            pl.col("users").filter(pl.col("state").is_in(["new", "resurrecting"])).sum()
            / pl.col("users").filter(pl.col("state") == "dormant").sum()
        ).alias("quick_ratio")
    )
    frame = frame.join(ratio, on="week_start", how="left").with_columns(
        pl.col("quick_ratio").fill_nan(0.0).fill_null(0.0),
        pl.when(pl.col("state") == "dormant")
        .then(-pl.col("users"))
        .otherwise(pl.col("users"))
        .alias("signed_users"),
        pl.col("week_start").alias("_week"),
    )
    frame = frame.with_columns(
        pl.when(pl.col("quick_ratio").is_infinite()).then(0.0).otherwise(pl.col("quick_ratio"))
        .alias("quick_ratio"),
        _week_complete(bounds).alias("is_complete"),
    )
    order = {s: i for i, s in enumerate(LIFECYCLE_STATES)}
    return (
        frame.with_columns(pl.col("state").replace_strict(order, return_dtype=pl.Int32)
                           .alias("_o"))
        .sort("week_start", "_o")
        .select(list(schema))
        .cast(schema)
    )


# --- reconciliation ------------------------------------------------------------------------


def reconcile_daily(
    con: duckdb.DuckDBPyConnection, trends: pl.DataFrame, events: str = tables.EVENTS
) -> list[str]:
    """Differences between daily_trends (dimension 'all') and a direct recount from events."""
    raw = con.execute(
        f"""SELECT CAST(event_ts AS DATE) AS day, count(*) AS events,
                   count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
                   count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
                   coalesce(sum(revenue) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
                   count(DISTINCT user_id) AS active_users
            FROM {events} GROUP BY 1"""
    ).pl()
    sess = con.execute(
        f"""SELECT day, count(*) AS sessions FROM (
                SELECT CAST(min(event_ts) AS DATE) AS day FROM {events} GROUP BY session_id)
            GROUP BY 1"""
    ).pl()
    overall = trends.filter(pl.col("dimension") == "all")
    problems: list[str] = []
    joined = overall.join(raw, on="day", how="full", suffix="_raw", coalesce=True).join(
        sess, on="day", how="left", suffix="_raw"
    )
    for col in ("events", "page_views", "purchases", "active_users", "sessions"):
        bad = joined.filter(pl.col(col).fill_null(0) != pl.col(f"{col}_raw").fill_null(0))
        if bad.height:
            problems.append(f"{col} differs on {bad.height} day(s), first {bad['day'][0]}")
    bad = joined.filter(
        (pl.col("revenue").fill_null(0) - pl.col("revenue_raw").fill_null(0)).abs() > 0.01
    )
    if bad.height:
        problems.append(f"revenue differs on {bad.height} day(s), first {bad['day'][0]}")
    # Breakdowns must add up to the total for additive counts.
    for dim in DIMENSIONS:
        part = trends.filter(pl.col("dimension") == dim).group_by("day").agg(
            pl.col("events").sum(), pl.col("sessions").sum()
        )
        check = overall.join(part, on="day", how="left", suffix="_dim")
        bad = check.filter(
            (pl.col("events") != pl.col("events_dim").fill_null(0))
            | (pl.col("sessions") != pl.col("sessions_dim").fill_null(0))
        )
        if bad.height:
            problems.append(f"{dim} breakdown does not add up on {bad.height} day(s)")
    return problems
