"""Weekly retention cohorts and lifecycle states, from the weeks each user was active in.

Both start from the same two relations over the user-days (user_daily, or the sessions where it
is missing): ``user_weeks`` (one row per user x ISO week with a session) and ``cohorts`` (each
user's first such week).
"""

from collections.abc import Callable
from datetime import date, timedelta

import duckdb
import polars as pl

from ubap_assets.core.trends.bounds import Bounds, data_bounds
from ubap_assets.core.trends.sources import user_day_rows
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

LIFECYCLE_STATES: tuple[str, ...] = ("new", "returning", "resurrecting", "dormant")
RETENTION_SCHEMA: dict[str, pl.DataType] = {
    "cohort_week": pl.Date,
    "weeks_since": pl.Int32,
    "cohort_size": pl.Int64,
    "active_users": pl.Int64,
    "retention_rate": pl.Float64,
    "is_complete": pl.Boolean,
}
LIFECYCLE_SCHEMA: dict[str, pl.DataType] = {
    "week_start": pl.Date,
    "state": pl.String,
    "users": pl.Int64,
    "signed_users": pl.Int64,
    "quick_ratio": pl.Float64,
    "is_complete": pl.Boolean,
}


def _with_user_weeks(user_days: str, query: str, tail: bool = False) -> str:
    """``query`` preceded by the CTEs ``user_weeks`` and ``cohorts`` (and any CTEs it adds).

    ``tail``: only the user-weeks from ``$from`` on (each user's cohort week still from their
    first day ever), for recomputing the weeks after ``$from``.
    """
    if not tail:
        return f"""
        WITH user_weeks AS (
            SELECT DISTINCT user_id, CAST(date_trunc('week', day) AS DATE) AS wk
            FROM ({user_days})
        ),
        cohorts AS (SELECT user_id, min(wk) AS cohort_week FROM user_weeks GROUP BY user_id),
        {query}"""
    return f"""
        WITH user_weeks AS (
            SELECT DISTINCT user_id, CAST(date_trunc('week', day) AS DATE) AS wk
            FROM ({user_days}) WHERE day >= $from
        ),
        cohorts AS (
            SELECT f.* FROM (
                SELECT user_id, CAST(date_trunc('week', min(day)) AS DATE) AS cohort_week
                FROM ({user_days}) GROUP BY user_id
            ) f SEMI JOIN user_weeks USING (user_id)
        ),
        {query}"""


_RETENTION_SQL = """
        sizes AS (SELECT cohort_week, count(*) AS cohort_size FROM cohorts GROUP BY 1),
        last AS (SELECT max(wk) AS last_wk FROM user_weeks),
        grid AS (
            SELECT cohort_week, cohort_size, CAST(n AS INTEGER) AS weeks_since
            FROM (
                SELECT cohort_week, cohort_size,
                       unnest(range(0, CAST(datediff('week', cohort_week, last_wk) AS BIGINT)
                           + 1)) AS n
                FROM sizes, last
            )
        ),
        act AS (
            SELECT c.cohort_week, CAST(datediff('week', c.cohort_week, ua.wk) AS INTEGER)
                       AS weeks_since, count(*) AS active_users
            FROM user_weeks ua JOIN cohorts c USING (user_id) GROUP BY 1, 2
        )
        SELECT g.cohort_week, g.weeks_since, g.cohort_size,
               coalesce(a.active_users, 0) AS active_users
        FROM grid g LEFT JOIN act a USING (cohort_week, weeks_since)
        ORDER BY 1, 2
"""

# A user active in the week before but not in this one is dormant this week.
_LIFECYCLE_SQL = """
        prev AS (SELECT user_id, CAST(wk + INTERVAL 7 DAY AS DATE) AS wk FROM user_weeks),
        j AS (
            SELECT coalesce(cur.wk, prev.wk) AS week_start,
                   coalesce(cur.user_id, prev.user_id) AS user_id,
                   cur.user_id IS NOT NULL AS active_now, prev.user_id IS NOT NULL AS active_before
            FROM user_weeks cur FULL OUTER JOIN prev
                ON cur.user_id = prev.user_id AND cur.wk = prev.wk
        )
        SELECT week_start,
               CASE WHEN NOT active_now THEN 'dormant'
                    WHEN active_before THEN 'returning'
                    WHEN c.cohort_week = j.week_start THEN 'new'
                    ELSE 'resurrecting' END AS state,
               count(*) AS users
        FROM j JOIN cohorts c USING (user_id)
        WHERE week_start <= (SELECT max(wk) FROM user_weeks) {and_after}
        GROUP BY 1, 2
"""


def _over_user_weeks(
    con: duckdb.DuckDBPyConnection,
    sessions: str,
    user_daily: str,
    query: str,
    schema: dict[str, pl.DataType],
    finish: Callable[[pl.DataFrame, Bounds], pl.DataFrame],
) -> pl.DataFrame:
    """``finish`` applied to the rows of ``query`` (see _with_user_weeks), cast to ``schema``.

    Without events there are no weeks: an empty frame of ``schema``.
    """
    bounds = data_bounds(con, sessions, user_daily)
    if bounds.empty:
        return pl.DataFrame(schema=schema)
    user_days = user_day_rows(con, sessions, user_daily)
    frame = finish(con.execute(_with_user_weeks(user_days, query)).pl(), bounds)
    return frame.select(list(schema)).cast(schema)


def _retention_rates(frame: pl.DataFrame, bounds: Bounds) -> pl.DataFrame:
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
        .with_columns(bounds.week_is_complete("_week"))
        .drop("_week")
    )


def retention_cohorts(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
) -> pl.DataFrame:
    """One row per weekly first-seen cohort x weeks since (zero-filled)."""
    return _over_user_weeks(
        con, sessions, user_daily, _RETENTION_SQL, RETENTION_SCHEMA, _retention_rates
    )


def _lifecycle_states(counts: pl.DataFrame, bounds: Bounds) -> pl.DataFrame:
    """Every week x state (zero-filled) with the signed users and the week's quick ratio."""
    first_week = bounds.first_day - timedelta(days=bounds.first_day.weekday())
    weeks = pl.DataFrame(
        {"week_start": pl.date_range(first_week, bounds.last_day, "1w", eager=True)}
    )
    grid = weeks.join(pl.DataFrame({"state": list(LIFECYCLE_STATES)}), how="cross")
    frame = grid.join(counts, on=["week_start", "state"], how="left").with_columns(
        pl.col("users").fill_null(0).cast(pl.Int64)
    )
    # Quick ratio: users gained (new + resurrecting) per user lost (dormant) that week.
    flows = frame.group_by("week_start").agg(
        pl.col("users").filter(pl.col("state").is_in(["new", "resurrecting"])).sum().alias("_up"),
        pl.col("users").filter(pl.col("state") == "dormant").sum().alias("_down"),
    )
    frame = frame.join(flows, on="week_start", how="left").with_columns(
        pl.when(pl.col("_down") > 0)
        .then(pl.col("_up") / pl.col("_down"))
        .otherwise(0.0)
        .alias("quick_ratio"),
        pl.when(pl.col("state") == "dormant")
        .then(-pl.col("users"))
        .otherwise(pl.col("users"))
        .alias("signed_users"),
        bounds.week_is_complete("week_start"),
    )
    state_order = {state: i for i, state in enumerate(LIFECYCLE_STATES)}
    return frame.with_columns(
        pl.col("state").replace_strict(state_order, return_dtype=pl.Int32).alias("_order")
    ).sort("week_start", "_order")


def lifecycle_weekly(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    user_daily: str = tables.USER_DAILY,
    since: date | None = None,
    stored: str = tables.LIFECYCLE_WEEKLY,
) -> pl.DataFrame:
    """One row per week x lifecycle state (new, returning, resurrecting, dormant).

    ``since``: the first day whose sessions changed since ``stored`` (this table as last
    written) was computed: the weeks from the one before since's week on are recomputed from
    their user-weeks and the week before them, the earlier ones kept from ``stored``; equal to
    recomputing every week.
    """
    if since is None or not table_exists(con, stored):
        query = _LIFECYCLE_SQL.format(and_after="")
        return _over_user_weeks(
            con, sessions, user_daily, query, LIFECYCLE_SCHEMA, _lifecycle_states
        )
    bounds = data_bounds(con, sessions, user_daily)
    tail = since - timedelta(days=since.weekday() + 7)
    if bounds.empty or tail <= bounds.first_day:
        return lifecycle_weekly(con, sessions, user_daily)
    user_days = user_day_rows(con, sessions, user_daily)
    query = _LIFECYCLE_SQL.format(and_after="AND week_start >= CAST($from AS DATE) + 7")
    counts = con.execute(
        _with_user_weeks(user_days, query, tail=True), {"from": tail - timedelta(days=7)}
    ).pl()
    recent = _lifecycle_states(counts, bounds).filter(pl.col("week_start") >= tail)
    recent = recent.select(list(LIFECYCLE_SCHEMA)).cast(LIFECYCLE_SCHEMA)
    kept = con.execute(f"SELECT * FROM {stored} WHERE week_start < ?", [tail]).pl()
    if kept.columns != recent.columns:  # an older layout: recompute every week
        return lifecycle_weekly(con, sessions, user_daily)
    order = {state: i for i, state in enumerate(LIFECYCLE_STATES)}
    return pl.concat([kept.cast(LIFECYCLE_SCHEMA), recent]).sort(
        "week_start", pl.col("state").replace_strict(order, return_dtype=pl.Int32)
    )
