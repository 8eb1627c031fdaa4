"""The day-partitioned intermediates: sessions, user_daily, page_daily, user_page_daily.

Dagster-free. Each builder (re)computes the rows of the days ``start <= day < end`` and swaps
them in atomically (one transaction: delete the window's rows, insert the new ones), creating
its table if it is missing. Running a builder day by day gives exactly the rows of one run over
the whole span, so the nightly run can extend a table a day at a time.

Which day a row belongs to (docs/tables/trends.md):

- ``sessions`` and ``user_daily``: the day of the session's first event (UTC). A session may
  run past midnight, so day D reads the events of [D-1, D+2): the day before shows which
  sessions started earlier (they are left out), the day after completes the ones that cross
  midnight. A session lasting more than a day past its start day is cut at D+2.
- ``page_daily`` and ``user_page_daily``: the day of the event itself.

Sums of money and durations are exact (decimal to 1e-6), so they do not depend on the order in
which DuckDB's threads add them up: the same rows always give the same value.

The SQL is written once, in DuckDB's dialect. A builder runs it on a DuckDB connection, or on
any other ``DayTables`` (the Spark engine, engines/spark.py, transpiles it with SQLGlot).
"""

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

import duckdb

from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_columns, table_exists

# Days computed per INSERT within one window's transaction: bounds the engine's memory on a
# long backfill to about a week of events (a 100M-event world: ~8M events per INSERT, within
# the warehouse's memory cap, lib/warehouse_io.warehouse_memory_limit).
CHUNK_DAYS = 7

# The window of a table without rows: nothing to compute, nothing to replace.
EMPTY_WINDOW: tuple[date, date] = (date(1970, 1, 1), date(1970, 1, 1))

# Page types counted per session and per user-day as <type>_views.
VIEWED_PAGE_TYPES: tuple[str, ...] = ("product", "blog", "help")

SESSIONS_COLUMNS: dict[str, str] = {
    "session_id": "VARCHAR",
    "user_id": "VARCHAR",
    "day": "DATE",
    "session_start": "TIMESTAMP",
    "session_end": "TIMESTAMP",
    "duration_s": "DOUBLE",
    "device": "VARCHAR",
    "traffic_source": "VARCHAR",
    "events": "BIGINT",
    "page_views": "BIGINT",
    "engaged_events": "BIGINT",
    "purchases": "BIGINT",
    "revenue": "DOUBLE",
    "is_bounce": "BOOLEAN",
    "converted": "BOOLEAN",
    "reached_page_view": "BOOLEAN",
    "reached_product_view": "BOOLEAN",
    "reached_add_to_cart": "BOOLEAN",
    "reached_checkout_start": "BOOLEAN",
    "reached_purchase": "BOOLEAN",
    "product_views": "BIGINT",
    "blog_views": "BIGINT",
    "help_views": "BIGINT",
    "searches": "BIGINT",
    "add_to_cart": "BIGINT",
    "checkout_starts": "BIGINT",
}

USER_DAILY_COLUMNS: dict[str, str] = {
    "day": "DATE",
    "user_id": "VARCHAR",
    "sessions": "BIGINT",
    "events": "BIGINT",
    "page_views": "BIGINT",
    "engaged_events": "BIGINT",
    "bounces": "BIGINT",
    "converted_sessions": "BIGINT",
    "product_views": "BIGINT",
    "blog_views": "BIGINT",
    "help_views": "BIGINT",
    "searches": "BIGINT",
    "add_to_cart": "BIGINT",
    "checkout_starts": "BIGINT",
    "purchases": "BIGINT",
    "session_seconds": "DOUBLE",
    "revenue": "DOUBLE",
    "first_session_start": "TIMESTAMP",
    "last_event_ts": "TIMESTAMP",
    "device": "VARCHAR",
    "traffic_source": "VARCHAR",
}

PAGE_DAILY_COLUMNS: dict[str, str] = {
    "day": "DATE",
    "page_id": "VARCHAR",
    "events": "BIGINT",
    "page_views": "BIGINT",
    "viewers": "BIGINT",
    "sessions": "BIGINT",
    "add_to_cart": "BIGINT",
    "checkout_starts": "BIGINT",
    "purchases": "BIGINT",
    "revenue": "DOUBLE",
}

USER_PAGE_DAILY_COLUMNS: dict[str, str] = {
    "day": "DATE",
    "user_id": "VARCHAR",
    "page_id": "VARCHAR",
    "event_type": "VARCHAR",
    "events": "BIGINT",
    "first_ts": "TIMESTAMP",
    "last_ts": "TIMESTAMP",
}


def exact_sum(expr: str, where: str | None = None) -> str:
    """SQL: the sum of ``expr`` (over the rows where ``where`` holds) in decimal, exact to 1e-6
    whatever the order of addition, as DOUBLE (0.0 when no row counts)."""
    only = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(coalesce(sum(CAST({expr} AS DECIMAL(38, 6))){only}, 0) AS DOUBLE)"


# The events of one read window with the page type of their page. Parameters: read start, end.
_EVENTS_IN_WINDOW = """
    page_kinds AS ({page_kinds}),
    ev AS (
        SELECT e.event_id, e.user_id, e.session_id, e.event_ts, e.event_type, e.page_id,
               e.device, e.traffic_source, e.revenue, k.page_type
        FROM {events} e LEFT JOIN page_kinds k USING (page_id)
        WHERE e.event_ts >= ? AND e.event_ts < ?
    )"""

_VIEW_COUNTS = ",\n".join(
    f"count(*) FILTER (WHERE event_type = 'page_view' AND page_type = '{kind}') AS {kind}_views"
    for kind in VIEWED_PAGE_TYPES
)

# Sessions whose first event lies in [session start, session end) (parameters 3 and 4), read
# from the events of the read window (parameters 1 and 2).
_SESSIONS_SQL = (
    "WITH"
    + _EVENTS_IN_WINDOW
    + f""",
    base AS (
        SELECT session_id, min(user_id) AS user_id,
               min(event_ts) AS session_start, max(event_ts) AS session_end,
               -- device and source of the first event, in one arg_min (two cost 12% more)
               arg_min(struct_pack(device := device, source := traffic_source),
                       (event_ts, event_id)) AS first_touch,
               count(*) AS events,
               count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
               count(*) FILTER (WHERE event_type NOT IN ('page_view', 'scroll')) AS engaged_events,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
               {exact_sum("revenue", "event_type = 'purchase'")} AS revenue,
               {_VIEW_COUNTS},
               count(*) FILTER (WHERE event_type = 'search') AS searches,
               count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_cart,
               count(*) FILTER (WHERE event_type = 'checkout_start') AS checkout_starts,
               min(event_ts) FILTER (WHERE event_type = 'page_view') AS t1,
               min(event_ts) FILTER (WHERE event_type = 'page_view' AND page_type = 'product')
                   AS t2
        FROM ev GROUP BY session_id
        HAVING min(event_ts) >= ? AND min(event_ts) < ?
    ),
    x AS (
        SELECT ev.session_id, ev.event_type, ev.event_ts
        FROM ev SEMI JOIN base USING (session_id)
        WHERE ev.event_type IN ('add_to_cart', 'checkout_start', 'purchase')
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
           date_diff('microsecond', b.session_start, b.session_end) / 1e6 AS duration_s,
           b.first_touch.device AS device, b.first_touch.source AS traffic_source,
           b.events, b.page_views, b.engaged_events, b.purchases,
           b.revenue,
           b.page_views = 1 AND b.engaged_events = 0 AS is_bounce,
           b.purchases > 0 AS converted,
           b.t1 IS NOT NULL AS reached_page_view,
           b.t2 IS NOT NULL AS reached_product_view,
           s3.t3 IS NOT NULL AS reached_add_to_cart,
           s4.t4 IS NOT NULL AS reached_checkout_start,
           s5.t5 IS NOT NULL AS reached_purchase,
           b.product_views, b.blog_views, b.help_views,
           b.searches, b.add_to_cart, b.checkout_starts
    FROM base b LEFT JOIN s3 USING (session_id) LEFT JOIN s4 USING (session_id)
    LEFT JOIN s5 USING (session_id)
    """
)

# One row per (day, user) from the sessions of [start, end) (parameters 1 and 2).
_USER_DAILY_SQL = f"""
    SELECT *, first_touch.device AS device, first_touch.source AS traffic_source FROM (
    SELECT day, user_id,
           count(*) AS sessions, sum(events) AS events, sum(page_views) AS page_views,
           sum(engaged_events) AS engaged_events,
           count(*) FILTER (WHERE is_bounce) AS bounces,
           count(*) FILTER (WHERE converted) AS converted_sessions,
           sum(product_views) AS product_views, sum(blog_views) AS blog_views,
           sum(help_views) AS help_views, sum(searches) AS searches,
           sum(add_to_cart) AS add_to_cart, sum(checkout_starts) AS checkout_starts,
           sum(purchases) AS purchases,
           {exact_sum("duration_s")} AS session_seconds,
           {exact_sum("revenue")} AS revenue,
           min(session_start) AS first_session_start,
           max(session_end) AS last_event_ts,
           arg_min(struct_pack(device := device, source := traffic_source),
                   (session_start, session_id)) AS first_touch
    FROM {{sessions}} WHERE day >= ? AND day < ?
    GROUP BY day, user_id)
"""

# One row per (day, page) from the events of [start, end) (parameters 1 and 2).
_PAGE_DAILY_SQL = f"""
    SELECT CAST(event_ts AS DATE) AS day, page_id,
           count(*) AS events,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           count(DISTINCT user_id) FILTER (WHERE event_type = 'page_view') AS viewers,
           count(DISTINCT session_id) AS sessions,
           count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_cart,
           count(*) FILTER (WHERE event_type = 'checkout_start') AS checkout_starts,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           {exact_sum("revenue", "event_type = 'purchase'")} AS revenue
    FROM {{events}}
    WHERE event_ts >= ? AND event_ts < ? AND page_id IS NOT NULL
    GROUP BY 1, 2
"""

# One row per (day, user, page, event type) from the events of [start, end).
_USER_PAGE_DAILY_SQL = """
    SELECT CAST(event_ts AS DATE) AS day, user_id, page_id, event_type,
           count(*) AS events, min(event_ts) AS first_ts, max(event_ts) AS last_ts
    FROM {events}
    WHERE event_ts >= ? AND event_ts < ? AND page_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
"""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _chunks(start: date, end: date) -> Iterator[tuple[date, date]]:
    """[start, end) cut into consecutive windows of at most CHUNK_DAYS days."""
    while start < end:
        stop = min(start + timedelta(days=CHUNK_DAYS), end)
        yield start, stop
        start = stop


def _check_window(start: date, end: date) -> None:
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"{name} must be a datetime.date (got {value!r}): pass day.date()")
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start}): the window is [start, end)")


class OlderLayoutError(RuntimeError):
    """A day table an older version wrote, with days outside the window a run rebuilds."""

    @classmethod
    def of(
        cls, table: str, old: list[str], new: list[str], outside: str, start: date, end: date
    ) -> "OlderLayoutError":
        """The error for ``table`` (columns ``old``, this version writes ``new``), holding
        ``outside`` (what it holds out of [start, end)), with the fix."""
        return cls(
            f"{table} was written by an older version (columns {', '.join(old)}; this one "
            f"writes {', '.join(new)}) and holds {outside} outside {start} .. "
            f"{end - timedelta(days=1)}: rebuilding it for these days alone would leave "
            "those in the older layout or drop them. Rematerialize every day of "
            f"{table} and of the assets after it (refresh_job over all partitions, e.g. "
            "`make up`), which rebuilds it whole"
        )


@runtime_checkable
class DayTables(Protocol):
    """Where the builders read and write: a DuckDB warehouse (``DuckDBDays``) or the lake
    through Spark (engines/spark.py). SQL comes in DuckDB's dialect, with ``?`` parameters."""

    def exists(self, table: str) -> bool: ...

    def one(self, sql: str, params: list | None = None) -> tuple: ...

    def replace_days(
        self,
        table: str,
        columns: dict[str, str],
        start: date,
        end: date,
        select: str,
        params_of: Callable[[date, date], list],
    ) -> int: ...


class DuckDBDays:
    """The day tables of a DuckDB warehouse."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def exists(self, table: str) -> bool:
        return table_exists(self.con, table)

    def one(self, sql: str, params: list | None = None) -> tuple:
        return self.con.execute(sql, params or []).fetchone()

    def _ensure_table(self, table: str, columns: dict[str, str], start: date, end: date) -> None:
        """Create ``table`` with ``columns``. One with other columns (an older layout) is
        rebuilt when it holds no row outside [start, end); otherwise rebuilding it for these
        days would drop the others, and OlderLayoutError says to rebuild every day."""
        old = table_columns(self.con, table)
        if old == list(columns):
            return
        if old:
            outside = (
                self.one(
                    f"SELECT count(*) FROM main.{table} WHERE day < ? OR day >= ?", [start, end]
                )
                if "day" in old
                else self.one(f"SELECT count(*) FROM main.{table}")
            )[0]
            if outside:
                where = f"{outside:,} row(s) of days"
                raise OlderLayoutError.of(table, old, list(columns), where, start, end)
            self.con.execute(f"DROP TABLE main.{table}")
        body = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        self.con.execute(f"CREATE TABLE main.{table} ({body})")

    def replace_days(
        self,
        table: str,
        columns: dict[str, str],
        start: date,
        end: date,
        select: str,
        params_of: Callable[[date, date], list],
    ) -> int:
        """Delete the rows of ``table`` with start <= day < end and insert ``select``'s rows,
        chunk by chunk, in one transaction (with the rebuild of a table of an older layout,
        ``_ensure_table``). ``params_of(chunk_start, chunk_end)`` gives its parameters."""
        con = self.con
        names = ", ".join(columns)
        written = 0
        con.execute("BEGIN TRANSACTION")
        try:
            self._ensure_table(table, columns, start, end)
            con.execute(f"DELETE FROM main.{table} WHERE day >= ? AND day < ?", [start, end])
            for lo, hi in _chunks(start, end):
                inserted = con.execute(
                    f"INSERT INTO main.{table} ({names}) SELECT {names} FROM ({select})",
                    params_of(lo, hi),
                ).fetchone()
                written += int(inserted[0])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return written


def day_tables(con: "duckdb.DuckDBPyConnection | DayTables") -> DayTables:
    """``con`` as DayTables: a DuckDB connection is wrapped, an engine passes through."""
    return con if isinstance(con, DayTables) else DuckDBDays(con)


def _require(db: DayTables, table: str, hint: str) -> None:
    if not db.exists(table):
        raise LookupError(f"table {table!r} does not exist: {hint}")


def _page_kinds_sql(db: DayTables, pages: str) -> str:
    if db.exists(pages):
        return f"SELECT page_id, min(page_type) AS page_type FROM {pages} GROUP BY page_id"
    return "SELECT CAST(NULL AS VARCHAR) AS page_id, CAST(NULL AS VARCHAR) AS page_type LIMIT 0"


def events_span(
    con: "duckdb.DuckDBPyConnection | DayTables", events: str = tables.EVENTS
) -> tuple[date, date]:
    """[first day, last day + 1) of ``events``; an empty window when it has no rows."""
    db = day_tables(con)
    _require(db, events, "materialize the events group (or ingest files) before the trends")
    first, last = db.one(f"SELECT min(event_ts), max(event_ts) FROM {events}")
    if first is None:
        return EMPTY_WINDOW
    return first.date(), last.date() + timedelta(days=1)


def _window(db: DayTables, start: date | None, end: date | None, events: str) -> tuple[date, date]:
    """The given window, or the whole span of ``events`` when both ends are None."""
    if start is None and end is None:
        return events_span(db, events)
    if start is None or end is None:
        raise ValueError("give both start and end (or neither, for the whole span of events)")
    _check_window(start, end)
    return start, end


def build_sessions(
    con: "duckdb.DuckDBPyConnection | DayTables",
    start: date | None = None,
    end: date | None = None,
    *,
    events: str = tables.EVENTS,
    pages: str = tables.PAGES,
    target: str = tables.SESSIONS,
) -> int:
    """Replace the sessions that started on days [start, end) (all of ``events`` when no window
    is given); returns the number of sessions written.

    One row per session: the device and traffic source of its first event, its counts, and the
    funnel steps it reached in order (each step at or after the previous one).
    """
    db = day_tables(con)
    _require(db, events, "materialize the events group (or ingest files) before the trends")
    start, end = _window(db, start, end, events)
    sql = _SESSIONS_SQL.format(events=events, page_kinds=_page_kinds_sql(db, pages))

    def params(lo: date, hi: date) -> list:
        read_from, read_to = _midnight(lo - timedelta(days=1)), _midnight(hi + timedelta(days=1))
        return [read_from, read_to, _midnight(lo), _midnight(hi)]

    return db.replace_days(target, SESSIONS_COLUMNS, start, end, sql, params)


def build_user_daily(
    con: "duckdb.DuckDBPyConnection | DayTables",
    start: date | None = None,
    end: date | None = None,
    *,
    sessions: str = tables.SESSIONS,
    target: str = tables.USER_DAILY,
) -> int:
    """Replace the user-days of [start, end) from the sessions starting on them (the whole span
    of ``sessions`` when no window is given); returns the rows written."""
    db = day_tables(con)
    _require(db, sessions, "build the sessions of these days first (build_sessions)")
    if start is None and end is None:
        first, last = db.one(f"SELECT min(day), max(day) FROM {sessions}")
        start, end = (first, last + timedelta(days=1)) if first else EMPTY_WINDOW
    elif start is None or end is None:
        raise ValueError("give both start and end (or neither, for the whole span of sessions)")
    else:
        _check_window(start, end)
    sql = _USER_DAILY_SQL.format(sessions=sessions)
    return db.replace_days(target, USER_DAILY_COLUMNS, start, end, sql, lambda lo, hi: [lo, hi])


def _by_event_day(
    con: "duckdb.DuckDBPyConnection | DayTables",
    start: date | None,
    end: date | None,
    events: str,
    target: str,
    columns: dict[str, str],
    sql: str,
) -> int:
    db = day_tables(con)
    _require(db, events, "materialize the events group (or ingest files) first")
    start, end = _window(db, start, end, events)
    return db.replace_days(
        target,
        columns,
        start,
        end,
        sql.format(events=events),
        lambda lo, hi: [_midnight(lo), _midnight(hi)],
    )


def build_page_daily(
    con: "duckdb.DuckDBPyConnection | DayTables",
    start: date | None = None,
    end: date | None = None,
    *,
    events: str = tables.EVENTS,
    target: str = tables.PAGE_DAILY,
) -> int:
    """Replace the page-days of [start, end) from the events of those days (by event day);
    returns the rows written."""
    return _by_event_day(con, start, end, events, target, PAGE_DAILY_COLUMNS, _PAGE_DAILY_SQL)


def build_user_page_daily(
    con: "duckdb.DuckDBPyConnection | DayTables",
    start: date | None = None,
    end: date | None = None,
    *,
    events: str = tables.EVENTS,
    target: str = tables.USER_PAGE_DAILY,
) -> int:
    """Replace the (user, page, event type)-days of [start, end) from the events of those days
    (by event day); returns the rows written."""
    return _by_event_day(
        con, start, end, events, target, USER_PAGE_DAILY_COLUMNS, _USER_PAGE_DAILY_SQL
    )


def build_all_daily(
    con: "duckdb.DuckDBPyConnection | DayTables", events: str = tables.EVENTS
) -> dict[str, int]:
    """All four tables over the whole span of ``events`` (for tests and tools); rows written
    per table."""
    start, end = events_span(con, events)
    return {
        tables.SESSIONS: build_sessions(con, start, end, events=events),
        tables.USER_DAILY: build_user_daily(con, start, end),
        tables.PAGE_DAILY: build_page_daily(con, start, end, events=events),
        tables.USER_PAGE_DAILY: build_user_page_daily(con, start, end, events=events),
    }
