"""The day-partitioned intermediates: a day at a time gives the rows of one whole-span run."""

from datetime import date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from ubap_assets.core import daily
from ubap_assets.core.schema import EVENTS_SCHEMA, PAGES_SCHEMA

TABLES = ("sessions", "user_daily", "page_daily", "user_page_daily")

PAGES = pl.DataFrame(
    {
        "page_id": ["home", "p1", "b1", "h1", "checkout"],
        "url": ["/", "/p/1", "/blog/1", "/help/1", "/checkout"],
        "title": ["Home", "P1", "B1", "H1", "Checkout"],
        "description": [""] * 5,
        "category": ["", "shoes", "", "", ""],
        "page_type": ["home", "product", "blog", "help", "checkout"],
        "price": [None, 50.0, None, None, None],
    },
    schema=PAGES_SCHEMA,
)


def ev(user, session, ts, kind, page="home", device="desktop", revenue=None):
    return {
        "event_id": f"{session}-{ts}-{kind}",
        "user_id": user,
        "session_id": session,
        "event_ts": datetime.fromisoformat(ts),
        "event_type": kind,
        "page_id": page,
        "device": device,
        "traffic_source": "organic",
        "revenue": revenue,
    }


def ingested_events() -> list[dict]:
    """Three days of an ingested log; u1's session s2 starts at 23:50 on 01-05 and ends (with
    its purchase) after midnight; u2 has two sessions on 01-06; an event without a page."""
    return [
        ev("u1", "s1", "2026-01-05 09:00:00", "page_view"),
        ev("u1", "s1", "2026-01-05 09:01:00", "page_view", "b1"),
        ev("u1", "s2", "2026-01-05 23:50:00", "page_view", "p1", device="mobile"),
        ev("u1", "s2", "2026-01-05 23:55:00", "add_to_cart", "p1", device="mobile"),
        ev("u1", "s2", "2026-01-06 00:05:00", "checkout_start", "checkout", device="mobile"),
        ev("u1", "s2", "2026-01-06 00:06:00", "purchase", "checkout", "mobile", revenue=49.99),
        ev("u2", "s3", "2026-01-06 10:00:00", "search", None),
        ev("u2", "s3", "2026-01-06 10:00:30", "page_view", "h1"),
        ev("u2", "s4", "2026-01-06 18:00:00", "page_view", device="tablet"),
        ev("u2", "s5", "2026-01-07 12:00:00", "page_view", "p1"),
        ev("u2", "s5", "2026-01-07 12:00:10", "scroll", "p1"),
    ]


def warehouse(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    events = pl.DataFrame(rows, schema=EVENTS_SCHEMA)  # noqa: F841 - DuckDB replacement scan
    pages = PAGES  # noqa: F841
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    con.execute("CREATE TABLE pages AS SELECT * FROM pages")
    return con


def world_warehouse(world) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    events, pages = world.events, world.pages  # noqa: F841 - DuckDB replacement scan
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    con.execute("CREATE TABLE pages AS SELECT * FROM pages")
    return con


def table(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    frame = con.execute(f"SELECT * FROM {name}").pl()
    return frame.sort(frame.columns)


def build_day_by_day(con: duckdb.DuckDBPyConnection, first: date, last: date) -> None:
    day = first
    while day <= last:
        nxt = day + timedelta(days=1)
        daily.build_sessions(con, day, nxt)
        daily.build_user_daily(con, day, nxt)
        daily.build_page_daily(con, day, nxt)
        daily.build_user_page_daily(con, day, nxt)
        day = nxt


def test_a_session_crossing_midnight_belongs_to_its_start_day():
    con = warehouse(ingested_events())
    daily.build_all_daily(con)
    s2 = con.execute("SELECT * FROM sessions WHERE session_id = 's2'").pl().row(0, named=True)
    assert s2["day"] == date(2026, 1, 5)
    assert (s2["events"], s2["purchases"], s2["revenue"]) == (4, 1, 49.99)
    assert s2["reached_purchase"] and s2["duration_s"] == 16 * 60
    assert (s2["product_views"], s2["add_to_cart"], s2["checkout_starts"]) == (1, 1, 1)
    # ... while page_daily counts the purchase on the day it happened.
    purchases = con.execute(
        "SELECT day, purchases, revenue FROM page_daily WHERE page_id = 'checkout'"
    ).fetchall()
    assert purchases == [(date(2026, 1, 6), 1, 49.99)]
    u1 = con.execute("SELECT * FROM user_daily WHERE user_id = 'u1'").pl().row(0, named=True)
    assert (u1["day"], u1["sessions"], u1["events"], u1["converted_sessions"]) == (
        date(2026, 1, 5),
        2,
        6,
        1,
    )
    assert (u1["blog_views"], u1["product_views"], u1["revenue"]) == (1, 1, 49.99)
    assert u1["device"] == "desktop"  # of the first session that day
    assert u1["last_event_ts"] == datetime(2026, 1, 6, 0, 6)


def test_new_columns_count_page_types_and_event_types():
    con = warehouse(ingested_events())
    daily.build_all_daily(con)
    s3 = con.execute("SELECT * FROM sessions WHERE session_id = 's3'").pl().row(0, named=True)
    assert (s3["searches"], s3["help_views"], s3["blog_views"], s3["page_views"]) == (1, 1, 0, 1)
    u2 = con.execute(
        "SELECT sessions, bounces, device FROM user_daily WHERE user_id = 'u2' AND day = ?",
        [date(2026, 1, 6)],
    ).fetchone()
    assert u2 == (2, 1, "desktop")  # s4 on the tablet is a bounce; s3 came first
    # The search without a page is in sessions but in neither page table.
    assert con.execute("SELECT count(*) FROM user_page_daily WHERE page_id IS NULL").fetchone() == (
        0,
    )
    assert con.execute("SELECT sum(events) FROM page_daily").fetchone() == (10,)


@pytest.mark.parametrize("source", ["ingested", "world"])
def test_day_by_day_equals_the_whole_span(source, tiny_world):
    rows = ingested_events()
    make = (
        (lambda: warehouse(rows)) if source == "ingested" else (lambda: world_warehouse(tiny_world))
    )
    whole, by_day = make(), make()
    written = daily.build_all_daily(whole)
    first, end = daily.events_span(by_day)
    build_day_by_day(by_day, first, end - timedelta(days=1))
    for name in TABLES:
        expected = table(whole, name)
        assert expected.height == written[name] > 0, name
        assert table(by_day, name).equals(expected), name


def test_the_nightly_window_recomputes_the_day_before(tiny_world):
    """Days 1..N-1, then the window [N-1, N] with day N's events just arrived, equals 1..N."""
    full, nightly = world_warehouse(tiny_world), world_warehouse(tiny_world)
    daily.build_all_daily(full)
    first, end = daily.events_span(nightly)
    last = end - timedelta(days=1)
    nightly.execute("CREATE TABLE later AS SELECT * FROM events WHERE event_ts >= ?", [last])
    nightly.execute("DELETE FROM events WHERE event_ts >= ?", [last])
    build_day_by_day(nightly, first, last - timedelta(days=1))
    nightly.execute("INSERT INTO events SELECT * FROM later")
    for build in (
        daily.build_sessions,
        daily.build_user_daily,
        daily.build_page_daily,
        daily.build_user_page_daily,
    ):
        build(nightly, last - timedelta(days=1), end)
    for name in TABLES:
        assert table(nightly, name).equals(table(full, name)), name


def test_user_daily_adds_up_to_the_sessions(tiny_world):
    con = world_warehouse(tiny_world)
    daily.build_all_daily(con)
    counts = (
        "events",
        "page_views",
        "engaged_events",
        "purchases",
        "product_views",
        "blog_views",
        "help_views",
        "searches",
        "add_to_cart",
        "checkout_starts",
    )
    per_user = ", ".join(f"sum({c})" for c in counts)
    from_users = con.execute(
        f"SELECT day, sum(sessions), {per_user}, sum(bounces), sum(converted_sessions), "
        "round(sum(revenue), 4), round(sum(session_seconds), 3), count(*) "
        "FROM user_daily GROUP BY day ORDER BY day"
    ).fetchall()
    from_sessions = con.execute(
        f"SELECT day, count(*), {per_user}, count(*) FILTER (WHERE is_bounce), "
        "count(*) FILTER (WHERE converted), round(sum(revenue), 4), round(sum(duration_s), 3), "
        "count(DISTINCT user_id) FROM sessions GROUP BY day ORDER BY day"
    ).fetchall()
    assert from_users == from_sessions
    assert sum(r[2] for r in from_users) == tiny_world.events.height


def test_page_tables_count_the_events(tiny_world):
    con = world_warehouse(tiny_world)
    daily.build_all_daily(con)
    events = tiny_world.events.filter(pl.col("page_id").is_not_null())
    by_day_page = (
        events.group_by(pl.col("event_ts").dt.date().alias("day"), "page_id")
        .agg(
            pl.len().alias("events"),
            (pl.col("event_type") == "page_view").sum().alias("page_views"),
            pl.col("user_id").filter(pl.col("event_type") == "page_view").n_unique().alias("v"),
            pl.col("session_id").n_unique().alias("sessions"),
            (pl.col("event_type") == "purchase").sum().alias("purchases"),
        )
        .sort("day", "page_id")
    )
    page_daily = table(con, "page_daily").sort("day", "page_id")
    assert page_daily["events"].sum() == events.height
    assert (
        page_daily["viewers"].cast(pl.Int64).to_list() == by_day_page["v"].cast(pl.Int64).to_list()
    )
    for col in ("events", "page_views", "sessions", "purchases"):
        assert page_daily[col].to_list() == by_day_page[col].cast(pl.Int64).to_list(), col
    assert page_daily["revenue"].sum() == pytest.approx(tiny_world.events["revenue"].sum())
    upd = con.execute(
        "SELECT sum(events), count(DISTINCT (user_id, page_id, event_type, day)) "
        "FROM user_page_daily"
    ).fetchone()
    expected = events.select(
        pl.struct("user_id", "page_id", "event_type", pl.col("event_ts").dt.date()).n_unique()
    ).item()
    assert upd == (events.height, expected)


def test_rebuilding_a_window_replaces_it():
    con = warehouse(ingested_events())
    daily.build_all_daily(con)
    before = {name: table(con, name) for name in TABLES}
    # Re-running is idempotent; after u2's 01-07 events vanish, that day's rows go too.
    assert daily.build_sessions(con, date(2026, 1, 7), date(2026, 1, 8)) == 1
    assert table(con, "sessions").equals(before["sessions"])
    con.execute("DELETE FROM events WHERE event_ts >= ?", [datetime(2026, 1, 7)])
    for build in (
        daily.build_sessions,
        daily.build_user_daily,
        daily.build_page_daily,
        daily.build_user_page_daily,
    ):
        assert build(con, date(2026, 1, 7), date(2026, 1, 8)) == 0
    for name in TABLES:
        assert con.execute(
            f"SELECT count(*) FROM {name} WHERE day >= ?", [date(2026, 1, 7)]
        ).fetchone() == (0,)
        assert table(con, name).height < before[name].height


def test_a_table_of_an_older_layout_is_rebuilt():
    con = warehouse(ingested_events())
    con.execute("CREATE TABLE sessions AS SELECT 's0' AS session_id, DATE '2026-01-05' AS day")
    assert daily.build_sessions(con) == 5
    assert "checkout_starts" in [r[0] for r in con.execute("DESCRIBE sessions").fetchall()]


def test_an_older_layout_with_days_outside_the_window_is_kept_and_named():
    """A nightly run after an upgrade that changed a day table must not rebuild it from its
    own days alone: the other days would be gone while Dagster still shows them materialized."""
    con = warehouse(ingested_events())
    con.execute(
        "CREATE TABLE sessions AS SELECT * FROM (VALUES ('s0', DATE '2026-01-05'), "
        "('s9', DATE '2026-01-06')) AS t(session_id, day)"
    )
    with pytest.raises(daily.OlderLayoutError, match=r"1 row\(s\) of days outside") as caught:
        daily.build_sessions(con, date(2026, 1, 6), date(2026, 1, 7))
    assert "Rematerialize every day of sessions" in str(caught.value)
    assert con.execute("SELECT session_id FROM sessions ORDER BY 1").fetchall() == [
        ("s0",),
        ("s9",),
    ]
    # a run over every day it holds rebuilds it
    assert daily.build_sessions(con, date(2026, 1, 5), date(2026, 1, 7)) > 0
    assert "checkout_starts" in [r[0] for r in con.execute("DESCRIBE sessions").fetchall()]


def test_bad_windows_and_missing_tables_are_clear_errors():
    con = warehouse(ingested_events())
    with pytest.raises(TypeError, match="must be a datetime.date"):
        daily.build_sessions(con, datetime(2026, 1, 5), datetime(2026, 1, 6))
    with pytest.raises(ValueError, match="is before start"):
        daily.build_page_daily(con, date(2026, 1, 6), date(2026, 1, 5))
    with pytest.raises(ValueError, match="give both start and end"):
        daily.build_user_page_daily(con, date(2026, 1, 6), None)
    with pytest.raises(LookupError, match="build the sessions"):
        daily.build_user_daily(con, date(2026, 1, 5), date(2026, 1, 6))
    with duckdb.connect() as empty, pytest.raises(LookupError, match="materialize the events"):
        daily.build_all_daily(empty)


def test_empty_events_give_empty_tables():
    con = warehouse([])
    assert daily.build_all_daily(con) == dict.fromkeys(TABLES, 0)
    for name in TABLES:
        assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
