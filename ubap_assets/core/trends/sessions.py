"""The ``sessions`` table: the one full pass over the raw events that every trend aggregates.

A session belongs to the day of its first event and takes that event's device and traffic
source; its funnel flags say which steps it reached in order (each step at or after the
previous one), so the funnels never read the events again.
"""

import duckdb

from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

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
    """The page ids of the product pages (funnel step 2); none when ``pages`` is missing."""
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
