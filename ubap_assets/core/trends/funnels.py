"""The ordered funnel per day (funnel_daily), per day x device / traffic source
(funnel_dimensions) and per day x segment (funnel_segments).

The steps reached come from the sessions table's ``reached_<step>`` flags, which already hold
the order (a step counts only at or after the previous one); here they are counted
(``_REACHED_COUNTS``) and turned into step conversion and drop-off (``_funnel_long``), the one
definition all three tables share.
"""

from datetime import date

import duckdb
import polars as pl

from ubap_assets.core.trends.bounds import Bounds, data_bounds
from ubap_assets.core.trends.period_metrics import DIMENSIONS, dimension_keys_sql, dimension_sql
from ubap_assets.core.trends.segments import ALL_SEGMENT_ID, segment_labels, use_segments
from ubap_assets.core.trends.sources import day_window, session_rows, trailing_window
from ubap_assets.warehouse import tables

FUNNEL_STEPS: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "checkout_start",
    "purchase",
)

# SQL select items: how many sessions reached each step, as reached_1 .. reached_5.
_REACHED_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE reached_{step}) AS reached_{i}"
    for i, step in enumerate(FUNNEL_STEPS, start=1)
)


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, 0.0 where the denominator is 0 (no session reached the step)."""
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(0.0)


def _funnel_long(wide: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """From one row per key with reached_1..5 to one row per key x step with conversions."""
    steps = range(1, len(FUNNEL_STEPS) + 1)
    wide = wide.with_columns([pl.col(f"reached_{i}").cast(pl.Float64) for i in steps])
    first = pl.col("reached_1")
    parts = []
    for i, step in enumerate(FUNNEL_STEPS, start=1):
        reached = pl.col(f"reached_{i}")
        previous = pl.col(f"reached_{i - 1}") if i > 1 else reached
        dropped = previous - reached
        parts.append(
            wide.select(
                *keys,
                pl.lit(i, pl.Int32).alias("step_index"),
                pl.lit(step).alias("step"),
                reached.cast(pl.Int64).alias("sessions"),
                _ratio(reached, previous).alias("step_conversion"),
                _ratio(reached, first).alias("overall_conversion"),
                dropped.cast(pl.Int64).alias("drop_off"),
                _ratio(dropped, previous).alias("drop_off_rate"),
            )
        )
    return pl.concat(parts).sort(*keys, "step_index")


def _day_grid(first: date, bounds: Bounds) -> pl.DataFrame:
    """Every calendar day from ``first`` to the data's last, so that a day without sessions
    gets zero rows."""
    return pl.DataFrame({"day": pl.date_range(first, bounds.last_day, "1d", eager=True)})


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
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    sessions: str = tables.SESSIONS,
) -> pl.DataFrame:
    """One row per day x funnel step (ordered funnel over sessions starting that day): the
    ``all`` rows of :func:`funnel_dimensions`."""
    frame = funnel_dimensions(con, start, end, sessions, dimensions=())
    return frame.drop("dimension", "dimension_value")


def funnel_dimensions(
    con: duckdb.DuckDBPyConnection,
    start: date | None = None,
    end: date | None = None,
    sessions: str = tables.SESSIONS,
    dimensions: tuple[str, ...] = DIMENSIONS,
) -> pl.DataFrame:
    """One row per day of [start, end) (every day of the sessions when no window is given) x
    dimension x dimension value x funnel step.

    ``dimension`` is ``all`` (value ``all``) or one of ``dimensions`` (sessions columns: device,
    traffic_source), labelled as in daily_trends (a missing value is ``unknown``). A session has
    one device and one source, so each dimension's values add up to the ``all`` row. A value has
    every day from its first day in the data on (zeros where it had no session), as in
    daily_trends.
    """
    unknown = set(dimensions) - set(DIMENSIONS)
    if unknown:
        raise ValueError(
            f"funnel dimensions must be among {DIMENSIONS} (got {sorted(unknown)}): "
            "pass a subset of trends.DIMENSIONS"
        )
    start, end = day_window(con, start, end, sessions)
    params = {"start": start, "end": end}
    sets, dimension, value = dimension_sql(dimensions)
    wide = con.execute(
        f"""
        SELECT period AS day, {dimension} AS dimension, {value} AS dimension_value,
               {_REACHED_COUNTS}
        FROM (SELECT *, day AS period FROM {sessions} WHERE day >= $start AND day < $end)
        GROUP BY GROUPING SETS ({sets})
        """,
        params,
    ).pl()
    keys_sql = dimension_keys_sql(dimensions, session_rows(sessions))
    keys = con.execute(keys_sql, {"end": end} if dimensions else {}).pl()
    days = pl.DataFrame({"day": pl.date_range(start, end, "1d", closed="left", eager=True)})
    grid = (
        days.join(keys, how="cross")
        .filter(pl.col("since").is_null() | (pl.col("day") >= pl.col("since")))
        .drop("since")
    )
    wide = grid.join(wide, on=["day", "dimension", "dimension_value"], how="left").fill_null(0)
    out = _funnel_long(wide, ["day", "dimension", "dimension_value"])
    return out.with_columns(data_bounds(con, sessions).day_is_complete())


def funnel_segments(
    con: duckdb.DuckDBPyConnection,
    sessions: str = tables.SESSIONS,
    segments: str | None = tables.USER_SEGMENTS,
    days: int | None = None,
) -> pl.DataFrame:
    """One row per day x segment x funnel step.

    Segment 'all' is always there; the others need the ``segments`` table (today's segments),
    and users without a segment count in 'all' only. ``days``: only the last ``days`` days up to
    the data end (sources.trailing_window, as segment_trends), every day when None; a day's
    rows are the same either way, and only the sessions of the days covered are read.
    """
    key_schema = {"day": pl.Date, "segment_id": pl.String, "segment_name": pl.String}
    start, end = trailing_window(con, days, sessions)
    if start >= end:
        return pl.DataFrame(schema={**key_schema, **_FUNNEL_SCHEMA})
    bounds = data_bounds(con, sessions, since=start)
    params = {"start": start, "end": end}
    window = f"SELECT * FROM {sessions} WHERE day >= $start AND day < $end"
    segments = use_segments(con, segments)
    if segments:
        sql = f"""
        SELECT s.day, coalesce(CAST(g.segment_id AS VARCHAR), '{ALL_SEGMENT_ID}') AS segment_id,
               {_REACHED_COUNTS}
        FROM ({window}) s LEFT JOIN {segments} g USING (user_id)
        GROUP BY GROUPING SETS ((s.day), (s.day, g.segment_id))
        HAVING GROUPING(g.segment_id) = 1 OR g.segment_id IS NOT NULL
        """
    else:
        sql = (
            f"SELECT day, '{ALL_SEGMENT_ID}' AS segment_id, {_REACHED_COUNTS} "
            f"FROM ({window}) GROUP BY 1"
        )
    wide = con.execute(sql, params).pl()
    grid = _day_grid(start, bounds).join(segment_labels(con, segments), how="cross")
    wide = grid.join(wide, on=["day", "segment_id"], how="left").fill_null(0)
    out = _funnel_long(wide, ["day", "segment_id", "segment_name"])
    return out.with_columns(bounds.day_is_complete())
