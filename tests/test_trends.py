"""Trends, funnels, retention and lifecycle on hand-made events with known answers."""

from datetime import date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from ubap_assets.core import trends
from ubap_assets.core.schema import EVENTS_SCHEMA, PAGES_SCHEMA

PAGES = pl.DataFrame(
    {
        "page_id": ["home", "p1", "cart", "checkout"],
        "url": ["/", "/p/1", "/cart", "/checkout"],
        "title": ["Home", "P1", "Cart", "Checkout"],
        "description": ["", "", "", ""],
        "category": ["", "shoes", "", ""],
        "page_type": ["home", "product", "cart", "checkout"],
        "price": [None, 50.0, None, None],
    },
    schema=PAGES_SCHEMA,
)


def ev(user, session, ts, kind, page="home", device="desktop", source="organic", revenue=None):
    return {
        "event_id": f"{session}-{ts}",
        "user_id": user,
        "session_id": session,
        "event_ts": datetime.fromisoformat(ts),
        "event_type": kind,
        "page_id": page,
        "device": device,
        "traffic_source": source,
        "revenue": revenue,
    }


def hand_made_events() -> list[dict]:
    """Mon 2026-01-05 .. Tue 01-13; nothing on 01-07; u2 comes back the week after."""
    return [
        # u1: the whole funnel, desktop / organic, 240 s.
        ev("u1", "s1", "2026-01-05 10:00:00", "page_view"),
        ev("u1", "s1", "2026-01-05 10:01:00", "page_view", "p1"),
        ev("u1", "s1", "2026-01-05 10:02:00", "add_to_cart", "p1"),
        ev("u1", "s1", "2026-01-05 10:03:00", "checkout_start", "checkout"),
        ev("u1", "s1", "2026-01-05 10:04:00", "purchase", "checkout", revenue=50.0),
        # u2: two bounces on mobile / paid (a scroll does not break a bounce).
        ev("u2", "s2", "2026-01-05 11:00:00", "page_view", device="mobile", source="paid"),
        ev("u2", "s3", "2026-01-05 12:00:00", "page_view", device="mobile", source="paid"),
        ev("u2", "s3", "2026-01-05 12:00:05", "scroll", device="mobile", source="paid"),
        # u3: adds to cart BEFORE viewing the product: the ordered funnel stops at step 2.
        ev("u3", "s4", "2026-01-06 09:00:00", "add_to_cart", "p1", source="direct"),
        ev("u3", "s4", "2026-01-06 09:01:00", "page_view", "p1", source="direct"),
        # u1 returns on Thursday.
        ev("u1", "s5", "2026-01-08 15:00:00", "page_view"),
        ev("u1", "s5", "2026-01-08 15:01:00", "click"),
        # u2 returns the next week; the data ends late that day (a complete day).
        ev("u2", "s6", "2026-01-13 23:30:00", "page_view", device="mobile", source="paid"),
    ]


def connect(rows: list[dict], segments: pl.DataFrame | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    events = pl.DataFrame(rows, schema=EVENTS_SCHEMA)  # noqa: F841 - DuckDB replacement scan
    pages = PAGES  # noqa: F841
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    con.execute("CREATE TABLE pages AS SELECT * FROM pages")
    if segments is not None:
        con.execute("CREATE TABLE user_segments AS SELECT * FROM segments")
    trends.build_sessions(con)
    return con


@pytest.fixture
def con():
    c = connect(hand_made_events())
    yield c
    c.close()


def _row(frame: pl.DataFrame, **where) -> dict:
    for k, v in where.items():
        frame = frame.filter(pl.col(k) == v)
    assert frame.height == 1, where
    return frame.row(0, named=True)


def _no_nan(frame: pl.DataFrame) -> None:
    for c, dtype in frame.schema.items():
        assert frame[c].null_count() == 0, c
        if dtype == pl.Float64:
            assert not frame[c].is_nan().any(), c


def test_sessions_table(con):
    s = con.execute("SELECT * FROM sessions ORDER BY session_id").pl()
    assert s["session_id"].to_list() == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert s["is_bounce"].to_list() == [False, True, True, False, False, True]
    assert s["converted"].to_list() == [True, False, False, False, False, False]
    assert s["duration_s"].to_list() == [240.0, 0.0, 5.0, 60.0, 60.0, 0.0]
    assert s["reached_add_to_cart"].to_list() == [True] + [False] * 5
    assert s["reached_product_view"].to_list() == [True, False, False, True, False, False]


def test_daily_trends_known_values(con):
    daily = trends.daily_trends(con)
    _no_nan(daily)
    assert daily.filter(pl.col("dimension") == "all")["day"].to_list() == [
        date(2026, 1, d) for d in range(5, 14)
    ]
    mon = _row(daily, day=date(2026, 1, 5), dimension="all")
    assert (mon["active_users"], mon["new_users"], mon["returning_users"]) == (2, 2, 0)
    assert (mon["sessions"], mon["converted_sessions"], mon["bounced_sessions"]) == (3, 1, 2)
    assert (mon["events"], mon["page_views"], mon["purchases"]) == (8, 4, 1)
    assert mon["revenue"] == 50.0
    assert mon["conversion_rate"] == pytest.approx(1 / 3)
    assert mon["bounce_rate"] == pytest.approx(2 / 3)
    assert mon["mean_session_duration_s"] == pytest.approx(245 / 3)
    assert mon["pages_per_session"] == pytest.approx(4 / 3)
    thu = _row(daily, day=date(2026, 1, 8), dimension="all")
    assert (thu["active_users"], thu["new_users"], thu["returning_users"]) == (1, 0, 1)
    mobile = _row(daily, day=date(2026, 1, 5), dimension="device", dimension_value="mobile")
    assert (mobile["sessions"], mobile["bounce_rate"]) == (2, 1.0)
    assert daily["is_complete"].all()


def test_day_without_events_is_zero_not_nan(con):
    daily = trends.daily_trends(con)
    empty = _row(daily, day=date(2026, 1, 7), dimension="all")
    assert empty["events"] == 0 and empty["sessions"] == 0
    assert empty["conversion_rate"] == 0.0 and empty["mean_session_duration_s"] == 0.0
    # Every breakdown value seen so far gets a zero row too, so series have no gaps...
    assert (
        daily.filter(pl.col("day") == date(2026, 1, 7)).height
        == daily.filter(pl.col("day") == date(2026, 1, 6)).height
        == 6
    )
    # ... from the value's first day on: 'direct' starts on 01-06, so a day never depends on
    # the days after it (computed alone, it equals the day of a whole-span run).
    direct = daily.filter(pl.col("dimension_value") == "direct")
    assert direct["day"].min() == date(2026, 1, 6)
    alone = trends.daily_trends(con, date(2026, 1, 5), date(2026, 1, 6))
    assert alone.equals(daily.filter(pl.col("day") == date(2026, 1, 5)))


def test_partial_last_day_is_not_complete():
    rows = [r for r in hand_made_events() if r["session_id"] != "s6"]
    rows.append(ev("u2", "s6", "2026-01-13 08:00:00", "page_view", device="mobile"))
    c = connect(rows)
    daily = trends.daily_trends(c)
    assert not _row(daily, day=date(2026, 1, 13), dimension="all")["is_complete"]
    assert _row(daily, day=date(2026, 1, 12), dimension="all")["is_complete"]
    weekly = trends.weekly_trends(c).filter(pl.col("dimension") == "all")
    assert weekly["is_complete"].to_list() == [True, False]
    assert trends.data_bounds(c).last_complete_day == date(2026, 1, 12)
    c.close()


def test_a_partial_day_is_settled_once_later_data_come_after_a_day_without_events():
    """01-06's data end at 09:01, and nothing comes on 01-07. The night of 01-07 wrote 01-06
    as incomplete; the night of 01-08 rewrites only 01-07 and 01-08, so the flag of 01-06 is
    settled from outside its window, and the table equals one run over every day."""
    early = [r for r in hand_made_events() if r["event_ts"] < datetime(2026, 1, 7)]
    with connect(early) as before:
        stale = trends.daily_trends(before)  # noqa: F841 - DuckDB replacement scan
    assert not _row(stale, day=date(2026, 1, 6), dimension="all")["is_complete"]
    c = connect(hand_made_events())
    c.execute("CREATE TABLE daily_trends AS SELECT * FROM stale")
    night = trends.daily_trends(c, date(2026, 1, 7), date(2026, 1, 9))  # noqa: F841
    c.execute("INSERT INTO daily_trends SELECT * FROM night")

    settled = trends.settle_completeness(c, "daily_trends", date(2026, 1, 7), date(2026, 1, 9))
    assert settled == stale.filter(pl.col("day") == date(2026, 1, 6)).height > 0
    table = c.execute("SELECT * FROM daily_trends").pl()
    whole = trends.daily_trends(c, date(2026, 1, 5), date(2026, 1, 9))
    order = ["day", "dimension", "dimension_value"]
    assert table.sort(order).equals(whole.sort(order))
    assert trends.settle_completeness(c, "daily_trends", date(2026, 1, 7), date(2026, 1, 9)) == 0
    c.close()


def test_weekly_trends_count_distinct_users_over_the_week(con):
    weekly = trends.weekly_trends(con)
    _no_nan(weekly)
    w1 = _row(weekly, week_start=date(2026, 1, 5), dimension="all")
    assert (w1["active_users"], w1["new_users"], w1["sessions"]) == (3, 3, 5)
    assert w1["days_with_data"] == 3
    assert w1["is_complete"]
    w2 = _row(weekly, week_start=date(2026, 1, 12), dimension="all")
    assert (w2["active_users"], w2["returning_users"]) == (1, 1)
    assert not w2["is_complete"]


def test_reconciliation_with_raw_events(con):
    assert trends.reconcile_daily(con, trends.daily_trends(con)) == []
    tampered = trends.daily_trends(con).with_columns(
        pl.when(pl.col("day") == date(2026, 1, 5))
        .then(pl.col("events") + 1)
        .otherwise(pl.col("events"))
        .alias("events")
    )
    problems = trends.reconcile_daily(con, tampered)
    assert any(p.startswith("events differs on 1 day") for p in problems)


def test_funnel_is_ordered(con):
    funnel = trends.funnel_daily(con)
    _no_nan(funnel)
    mon = funnel.filter(pl.col("day") == date(2026, 1, 5))
    assert mon["sessions"].to_list() == [3, 1, 1, 1, 1]
    assert mon["step_conversion"].to_list() == pytest.approx([1.0, 1 / 3, 1.0, 1.0, 1.0])
    assert mon["drop_off"].to_list() == [0, 2, 0, 0, 0]
    tue = funnel.filter(pl.col("day") == date(2026, 1, 6))
    assert tue["sessions"].to_list() == [1, 1, 0, 0, 0]  # cart before the product view
    assert tue["drop_off_rate"].to_list() == pytest.approx([0.0, 0.0, 1.0, 0.0, 0.0])
    wed = funnel.filter(pl.col("day") == date(2026, 1, 7))
    assert wed["sessions"].sum() == 0 and wed["step_conversion"].sum() == 0.0


def _funnel(frame: pl.DataFrame, day: date, dimension: str, value: str) -> list[int]:
    rows = frame.filter(
        (pl.col("day") == day)
        & (pl.col("dimension") == dimension)
        & (pl.col("dimension_value") == value)
    )
    return rows.sort("step_index")["sessions"].to_list()


def test_funnel_by_device_and_source_known_values(con):
    funnel = trends.funnel_dimensions(con)
    _no_nan(funnel)
    mon, tue, wed = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)
    assert _funnel(funnel, mon, "device", "desktop") == [1, 1, 1, 1, 1]
    assert _funnel(funnel, mon, "device", "mobile") == [2, 0, 0, 0, 0]
    assert _funnel(funnel, mon, "traffic_source", "organic") == [1, 1, 1, 1, 1]
    assert _funnel(funnel, mon, "traffic_source", "paid") == [2, 0, 0, 0, 0]
    assert _funnel(funnel, tue, "traffic_source", "direct") == [1, 1, 0, 0, 0]
    # Every value has every day: zeros (not missing rows, not NaN) where it had no session.
    assert _funnel(funnel, tue, "device", "mobile") == [0, 0, 0, 0, 0]
    assert _funnel(funnel, wed, "all", "all") == [0, 0, 0, 0, 0]
    mobile = funnel.filter((pl.col("day") == mon) & (pl.col("dimension_value") == "mobile"))
    assert mobile["step_conversion"].to_list() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert mobile["drop_off"].to_list() == [0, 2, 0, 0, 0]
    # The 'all' rows are funnel_daily: one funnel definition.
    overall = funnel.filter(pl.col("dimension") == "all").drop("dimension", "dimension_value")
    assert overall.equals(trends.funnel_daily(con))


def _world_sessions(world) -> duckdb.DuckDBPyConnection:
    """A connection holding ``world``'s events and pages and the sessions built from them."""
    c = duckdb.connect()
    events, pages = world.events, world.pages  # noqa: F841 - DuckDB replacement scan
    c.execute("CREATE TABLE events AS SELECT * FROM events")
    c.execute("CREATE TABLE pages AS SELECT * FROM pages")
    trends.build_sessions(c)
    return c


def test_funnel_dimensions_add_up_to_the_funnel(tiny_world):
    c = _world_sessions(tiny_world)
    daily = trends.funnel_daily(c)
    by_dim = trends.funnel_dimensions(c)
    c.close()
    _no_nan(by_dim)
    assert set(by_dim["dimension"]) == {"all", "device", "traffic_source"}
    assert by_dim.filter(pl.col("dimension") == "device")["dimension_value"].n_unique() >= 2
    total = daily.select("day", "step_index", total="sessions")
    for dimension in ("device", "traffic_source"):
        sums = (
            by_dim.filter(pl.col("dimension") == dimension)
            .group_by("day", "step_index")
            .agg(pl.col("sessions").sum())
            .join(total, on=["day", "step_index"], how="full", coalesce=True)
        )
        assert sums.height == daily.height
        assert (sums["sessions"] == sums["total"]).all(), dimension
    grew = by_dim.with_columns(
        pl.col("sessions").diff().over("day", "dimension", "dimension_value").alias("d")
    ).filter(pl.col("d") > 0)
    assert grew.height == 0
    assert by_dim["step_conversion"].is_between(0.0, 1.0).all()
    mobile = by_dim.filter((pl.col("dimension_value") == "mobile") & (pl.col("step") == "purchase"))
    assert mobile["sessions"].sum() > 0


def test_funnel_dimensions_check_catches_a_split_that_does_not_add_up(tiny_world):
    from ubap_assets.defs.trends.checks import funnel_dimension_problems

    c = _world_sessions(tiny_world)
    daily, by_dim = trends.funnel_daily(c), trends.funnel_dimensions(c)
    c.close()
    passed, metadata = funnel_dimension_problems(by_dim, daily)
    assert passed, metadata
    first = by_dim["day"].min()
    tampered = by_dim.with_columns(
        sessions=pl.when(
            (pl.col("day") == first)
            & (pl.col("dimension_value") == "mobile")
            & (pl.col("step_index") == 1)
        )
        .then(pl.col("sessions") + 1)
        .otherwise(pl.col("sessions"))
    )
    passed, metadata = funnel_dimension_problems(tampered, daily)
    assert not passed
    assert metadata["sums_not_equal_to_funnel_daily"] == 1
    assert metadata["mismatched_dimensions"] == "device"


def test_funnel_dimensions_reject_an_unknown_dimension(con):
    with pytest.raises(ValueError, match="funnel dimensions must be among"):
        trends.funnel_dimensions(con, dimensions=("country",))


def test_detector_monitors_funnel_steps_by_device(tiny_world):
    from ubap_assets.core import anomalies

    c = _world_sessions(tiny_world)
    daily, funnel = trends.daily_trends(c), trends.funnel_daily(c)
    by_dim = trends.funnel_dimensions(c)
    c.close()
    series = anomalies.monitored_series(daily, None, funnel, None, by_dim)
    mobile = series.filter(
        (pl.col("dimension") == "device")
        & (pl.col("dimension_value") == "mobile")
        & (pl.col("metric") == "funnel_purchase")
    ).sort("day")
    complete = by_dim.filter(pl.col("is_complete") & (pl.col("dimension_value") == "mobile"))
    assert mobile.height == complete["day"].n_unique()
    purchases = complete.filter(pl.col("step") == "purchase").sort("day")["sessions"]
    checkouts = complete.filter(pl.col("step") == "checkout_start").sort("day")["sessions"]
    assert mobile["numerator"].to_list() == purchases.cast(pl.Float64).to_list()
    assert mobile["denominator"].to_list() == checkouts.cast(pl.Float64).to_list()
    funnel_scopes = series.filter(pl.col("metric").str.starts_with("funnel_")).select(
        "dimension", "dimension_value"
    )
    assert {"all", "device", "traffic_source"} <= set(funnel_scopes["dimension"])
    # 'all' is monitored once (from funnel_daily), not again from funnel_dimensions.
    assert (
        series.filter(pl.col("dimension") == "all").select("day", "metric").is_duplicated().sum()
        == 0
    )
    history = anomalies.detect(series, anomalies.DetectorSettings())
    scored = history.filter(
        (pl.col("dimension") == "device") & pl.col("metric").str.starts_with("funnel_")
    )
    assert scored.height > 0 and scored["score"].is_finite().all()


def test_a_mobile_checkout_bug_is_an_incident_headed_by_mobile():
    """A clean world where 40% of mobile checkouts fail to purchase for two weeks: with the
    funnel by device monitored, the incident names mobile's checkout step, not only 'all'."""
    from ubap_assets.core import anomalies
    from ubap_assets.core.synthetic import WorldSpec, generate_world

    world = generate_world(
        WorldSpec(users=4000, days=63, seed=3, start_date=date(2026, 1, 5), anomalies=False)
    )
    c = _world_sessions(world)
    bug_start, bug_end = date(2026, 2, 16), date(2026, 3, 1)
    c.execute(
        "UPDATE sessions SET reached_purchase = false WHERE device = 'mobile' "
        "AND reached_purchase AND day BETWEEN ? AND ? AND hash(session_id) % 10 < 4",
        [bug_start, bug_end],
    )
    daily, funnel = trends.daily_trends(c), trends.funnel_daily(c)
    by_dim = trends.funnel_dimensions(c)
    c.close()
    settings = anomalies.DetectorSettings()
    series = anomalies.monitored_series(daily, None, funnel, None, by_dim)
    history = anomalies.detect(series, settings)
    _, incidents, _ = anomalies.build_incidents(history, series, settings)
    assert incidents.height == 1, incidents  # the clean world raises nothing else
    incident = incidents.row(0, named=True)
    assert incident["start_day"] <= bug_start + timedelta(days=3)
    assert incident["end_day"] >= bug_end
    assert (incident["headline_metric"], incident["headline_dimension"]) == (
        "funnel_purchase",
        "device",
    )
    assert "device=mobile" in incident["description"]
    assert "mobile accounts for" in incident["description"]


def test_retention_and_lifecycle(con):
    ret = trends.retention_cohorts(con)
    _no_nan(ret)
    assert ret.select("weeks_since", "cohort_size", "active_users").rows() == [(0, 3, 3), (1, 3, 1)]
    assert ret["retention_rate"].to_list() == pytest.approx([1.0, 1 / 3])
    life = trends.lifecycle_weekly(con)
    _no_nan(life)
    users = {(r["week_start"].day, r["state"]): r["users"] for r in life.iter_rows(named=True)}
    assert users[(5, "new")] == 3
    assert (users[(12, "returning")], users[(12, "dormant")], users[(12, "new")]) == (1, 2, 0)
    assert _row(life, week_start=date(2026, 1, 12), state="dormant")["signed_users"] == -2


def test_segments_when_present_and_absent(con):
    only_all = trends.segment_trends(con)
    assert only_all["segment_id"].unique().to_list() == ["all"]
    segments = pl.DataFrame(
        {"user_id": ["u1", "u2"], "segment_id": [0, 1], "segment_name": ["Buyers", "Bouncers"]}
    )
    c = connect(hand_made_events(), segments)
    seg = trends.segment_trends(c)
    _no_nan(seg)
    mon = seg.filter(pl.col("day") == date(2026, 1, 5))
    assert dict(zip(mon["segment_name"], mon["sessions"], strict=True)) == {
        "All users": 3,
        "Buyers": 1,
        "Bouncers": 2,
    }
    # u3 has no segment: counted in 'all' only.
    assert _row(seg, day=date(2026, 1, 6), segment_id="all")["sessions"] == 1
    assert (
        seg.filter((pl.col("day") == date(2026, 1, 6)) & (pl.col("segment_id") != "all"))[
            "sessions"
        ].sum()
        == 0
    )
    fs = trends.funnel_segments(c)
    buyers = fs.filter((pl.col("segment_name") == "Buyers") & (pl.col("day") == date(2026, 1, 5)))
    assert buyers["sessions"].to_list() == [1, 1, 1, 1, 1]
    c.close()


def test_empty_events_give_empty_tables():
    c = connect([])
    for fn in (
        trends.daily_trends,
        trends.weekly_trends,
        trends.segment_trends,
        trends.funnel_daily,
        trends.funnel_dimensions,
        trends.funnel_segments,
        trends.retention_cohorts,
        trends.lifecycle_weekly,
    ):
        assert fn(c).height == 0, fn.__name__
    assert trends.data_bounds(c).notes == ["events is empty: nothing to aggregate"]
    c.close()


def test_tiny_world_reconciles(tiny_world):
    c = duckdb.connect()
    events, pages = tiny_world.events, tiny_world.pages  # noqa: F841
    c.execute("CREATE TABLE events AS SELECT * FROM events")
    c.execute("CREATE TABLE pages AS SELECT * FROM pages")
    n = trends.build_sessions(c)
    assert n == tiny_world.events["session_id"].n_unique()
    daily = trends.daily_trends(c)
    _no_nan(daily)
    assert trends.reconcile_daily(c, daily) == []
    overall = daily.filter(pl.col("dimension") == "all")
    assert overall["events"].sum() == tiny_world.events.height
    assert overall["revenue"].sum() == pytest.approx(tiny_world.events["revenue"].sum())
    funnel = trends.funnel_daily(c)
    grew = funnel.with_columns(pl.col("sessions").diff().over("day").alias("d")).filter(
        pl.col("d") > 0
    )
    assert grew.height == 0
    assert funnel.filter(pl.col("step") == "purchase")["sessions"].sum() > 0
    c.close()


def test_missing_events_table_is_a_clear_error():
    with duckdb.connect() as c, pytest.raises(LookupError, match="materialize the events"):
        trends.build_sessions(c)


@pytest.mark.parametrize(
    ("name", "dropped"), [("weekly_trends", "days_with_data"), ("lifecycle_weekly", "quick_ratio")]
)
def test_weekly_tables_recomputed_from_a_day_equal_every_week_recomputed(tiny_world, name, dropped):
    """The nightly run recomputes the weeks from the one before its first day and keeps the
    earlier ones: the same table as recomputing every week, also from a stored older layout."""
    from ubap_assets.core import daily

    compute = getattr(trends, name)
    c = duckdb.connect()
    all_events, pages = tiny_world.events, tiny_world.pages  # noqa: F841
    last = datetime.combine(tiny_world.events["event_ts"].max().date(), datetime.min.time())
    c.execute("CREATE TABLE events AS SELECT * FROM all_events WHERE event_ts < ?", [last])
    c.execute("CREATE TABLE pages AS SELECT * FROM pages")
    daily.build_all_daily(c)
    before = compute(c)  # noqa: F841
    c.execute(f"CREATE TABLE {name} AS SELECT * FROM before")
    c.execute("INSERT INTO events SELECT * FROM all_events WHERE event_ts >= ?", [last])
    window = (last.date() - timedelta(days=1), last.date() + timedelta(days=1))
    daily.build_sessions(c, *window)
    daily.build_user_daily(c, *window)
    everything = compute(c)
    assert not everything.equals(before)
    for since in (window[0], window[0] - timedelta(days=12)):
        assert compute(c, since=since).equals(everything), since
    c.execute(f"ALTER TABLE {name} DROP COLUMN {dropped}")
    assert compute(c, since=window[0]).equals(everything)
    c.close()
