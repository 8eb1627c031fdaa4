"""user_features: values on hand-made events, window bounds, bad input, and the features of a
small world against a direct recomputation from its events by session start day."""

from datetime import date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from tests.conftest import world_db
from ubap_assets.core import features
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.schema import EVENTS_SCHEMA, USERS_SCHEMA

CUTOFF = datetime(2026, 3, 1)


def _pages() -> dict[str, str]:
    """page_type -> one page_id of that type."""
    pages = page_catalogue()
    return dict(pages.group_by("page_type").agg(pl.col("page_id").first()).iter_rows())


def _event(i, user, session, ts, kind, page, revenue=None):
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "session_id": session,
        "event_ts": ts,
        "event_type": kind,
        "page_id": page,
        "device": "mobile",
        "traffic_source": "search",
        "revenue": revenue,
    }


def hand_made(extra: list[dict] | None = None) -> duckdb.DuckDBPyConnection:
    p = _pages()
    t0 = CUTOFF - timedelta(days=3)
    rows = [
        # a: a product visit with a cart, checkout and purchase, then a bounce
        _event(1, "a", "s1", t0, "page_view", p["product"]),
        _event(2, "a", "s1", t0 + timedelta(minutes=2), "add_to_cart", p["product"]),
        _event(3, "a", "s1", t0 + timedelta(minutes=4), "checkout_start", p["checkout"]),
        _event(4, "a", "s1", t0 + timedelta(minutes=6), "purchase", p["checkout"], 50.0),
        _event(5, "a", "s2", CUTOFF - timedelta(hours=1), "page_view", p["blog"]),
        # b: one bounce long ago (outside a 7-day lookback)
        _event(6, "b", "s3", CUTOFF - timedelta(days=20), "page_view", p["home"]),
        # an event exactly at the cutoff belongs to the future
        _event(7, "b", "s4", CUTOFF, "purchase", p["checkout"], 99.0),
    ] + (extra or [])
    users = pl.DataFrame(  # noqa: F841 - read by DuckDB
        {
            "user_id": ["a", "b", "c"],
            "signup_date": [date(2026, 1, 1), date(2026, 2, 1), date(2026, 2, 20)],
            "country": ["DE"] * 3,
            "device": ["mobile", "desktop", "tablet"],
            "traffic_source": ["search", "email", "direct"],
        },
        schema=USERS_SCHEMA,
    )
    events = pl.DataFrame(rows, schema=EVENTS_SCHEMA)  # noqa: F841 - read by DuckDB
    pages = page_catalogue()  # noqa: F841
    con = duckdb.connect()
    for table in ("users", "events", "pages"):
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM {table}")
    build_all_daily(con)  # sessions and user_daily, which the features and labels read
    return con


def test_features_on_hand_made_events():
    frame = features.compute_features(hand_made(), CUTOFF, 7)
    rows = {r["user_id"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"a", "b", "c"}
    a = rows["a"]
    assert (a["sessions"], a["events"], a["page_views"], a["purchases"]) == (2, 5, 2, 1)
    assert a["revenue"] == 50.0
    assert a["bounce_rate"] == 0.5  # s2 is a single page view
    assert a["product_share"] == 0.5 and a["blog_share"] == 0.5
    assert a["add_to_cart_rate"] == 0.5 and a["purchase_rate"] == 0.5
    assert a["avg_session_minutes"] == pytest.approx(3.0)  # (6 + 0) / 2
    assert a["recency_days"] == pytest.approx(1 / 24)
    assert a["sessions_last_7d"] == 2 and a["active_days"] == 2
    assert a["days_since_signup"] == (CUTOFF.date() - date(2026, 1, 1)).days
    # b's only past event is outside the 7-day window; its purchase at the cutoff is future.
    b = rows["b"]
    assert (b["sessions"], b["purchases"], b["revenue"]) == (0, 0, 0.0)
    assert b["recency_days"] == 7.0
    assert rows["c"]["events"] == 0 and rows["c"]["device"] == "tablet"
    assert frame.null_count().sum_horizontal()[0] == 0


def test_bounce_is_the_session_bounce_a_scroll_is_not_engagement():
    p = _pages()
    t0 = CUTOFF - timedelta(days=2)
    extra = [
        # c: a page view and a scroll: a bounce (as in sessions.is_bounce), not engagement
        _event(20, "c", "s20", t0, "page_view", p["blog"]),
        _event(21, "c", "s20", t0 + timedelta(seconds=30), "scroll", p["blog"]),
        # c again: a page view and a search: engaged, no bounce
        _event(22, "c", "s21", t0 + timedelta(hours=2), "page_view", p["home"]),
        _event(23, "c", "s21", t0 + timedelta(hours=2, seconds=9), "search", p["home"]),
        # c's next session after the cutoff: a page view and a scroll again
        _event(24, "c", "s22", CUTOFF + timedelta(days=1), "page_view", p["blog"]),
        _event(25, "c", "s22", CUTOFF + timedelta(days=1, seconds=5), "scroll", p["blog"]),
    ]
    con = hand_made(extra)
    feats = features.compute_features(con, CUTOFF, 7)
    c = feats.filter(pl.col("user_id") == "c").row(0, named=True)
    assert c["sessions"] == 2 and c["bounce_rate"] == 0.5
    labels = dict(features.bounce_labels(con, feats, CUTOFF, 14).select("user_id", "label").rows())
    assert labels["c"] is True
    # the same bounce as the sessions table, user by user
    trends = dict(
        con.execute(
            "SELECT user_id, avg(is_bounce::DOUBLE) FROM sessions "
            "WHERE session_start >= ? AND session_start < ? GROUP BY user_id",
            [CUTOFF - timedelta(days=7), CUTOFF],
        ).fetchall()
    )
    assert trends == dict(
        feats.filter(pl.col("sessions") > 0).select("user_id", "bounce_rate").rows()
    )


def test_a_session_counts_on_its_start_day_on_both_sides_of_the_cutoff():
    p = _pages()
    start = CUTOFF - timedelta(minutes=10)
    extra = [
        # c: a session from 23:50 to 00:05 across the cutoff, with a purchase after midnight
        _event(30, "c", "s30", start, "page_view", p["product"]),
        _event(31, "c", "s30", CUTOFF + timedelta(minutes=2), "add_to_cart", p["product"]),
        _event(32, "c", "s30", CUTOFF + timedelta(minutes=5), "purchase", p["checkout"], 20.0),
    ]
    con = hand_made(extra)
    feats = features.compute_features(con, CUTOFF, 7)
    c = feats.filter(pl.col("user_id") == "c").row(0, named=True)
    # the whole session, its purchase too, is in the features: it started before the cutoff
    assert (c["sessions"], c["events"], c["purchases"], c["revenue"]) == (1, 3, 1, 20.0)
    assert c["avg_session_minutes"] == pytest.approx(15.0)
    assert c["recency_days"] == 0.0  # it ended after the cutoff: clamped, never negative
    # ... and in no label: its purchase is not a future purchase, it is not a next session
    conversion = features.conversion_labels(con, feats, CUTOFF, 14)
    assert dict(conversion.select("user_id", "label").rows())["c"] is False
    bounce = features.bounce_labels(con, feats, CUTOFF, 14)
    assert "c" not in bounce["user_id"].to_list()


def test_a_cutoff_must_be_a_midnight():
    with pytest.raises(ValueError, match="not a midnight"):
        features.compute_features(hand_made(), CUTOFF - timedelta(hours=1), 7)


def test_longer_lookback_sees_older_events():
    frame = features.compute_features(hand_made(), CUTOFF, 30)
    b = frame.filter(pl.col("user_id") == "b").row(0, named=True)
    assert b["sessions"] == 1 and b["bounce_rate"] == 1.0
    assert b["recency_days"] == pytest.approx(20.0)


def test_labels_come_from_the_window_after_the_cutoff():
    con = hand_made()
    feats = features.compute_features(con, CUTOFF, 7)
    conv = dict(
        features.conversion_labels(con, feats, CUTOFF, 14).select("user_id", "label").rows()
    )
    assert conv == {"a": False, "b": True, "c": False}
    bounce = features.bounce_labels(con, feats, CUTOFF, 14)
    # b's next session (s4) is one purchase event: not a page-view bounce; a and c never return.
    assert dict(bounce.select("user_id", "label").rows()) == {"b": False}


def test_plan_windows_places_three_disjoint_cutoffs():
    plan = features.plan_windows(datetime(2026, 1, 1), datetime(2026, 3, 31))
    assert plan.horizon_days == 14 and not plan.horizon_note
    assert plan.test_cutoff == plan.end - timedelta(days=14)
    assert plan.valid_cutoff == plan.test_cutoff - timedelta(days=14)
    assert plan.train_cutoff == plan.valid_cutoff - timedelta(days=14)
    assert plan.lookback_days == (plan.train_cutoff - plan.first_day).days
    capped = features.plan_windows(datetime(2026, 1, 1), datetime(2026, 3, 31), lookback_days=10)
    assert capped.lookback_days == 10


def test_a_short_history_shortens_the_default_horizon_and_says_so():
    plan = features.plan_windows(datetime(2026, 1, 5), datetime(2026, 2, 16))  # 42 days
    assert plan.horizon_days == 11 and plan.lookback_days == 9
    assert "shortened from 14 to 11 days" in plan.horizon_note
    assert features.conversion_label_name(plan.horizon_days) == "purchase within 11 days"


def test_too_short_history_is_an_empty_window():
    with pytest.raises(features.FeatureWindowError, match="empty window.*horizon_days"):
        features.plan_windows(datetime(2026, 1, 1), datetime(2026, 1, 30), horizon_days=14)
    with pytest.raises(features.FeatureWindowError, match="empty window"):
        features.plan_windows(datetime(2026, 1, 1), datetime(2026, 1, 25))  # < 3 x 7 + 7


def test_no_events_in_the_window_fails_clearly():
    with pytest.raises(features.FeatureWindowError, match="no session started in"):
        features.compute_features(hand_made(), CUTOFF - timedelta(days=60), 7)
    frame = pl.DataFrame(schema=EVENTS_SCHEMA)  # noqa: F841 - read by DuckDB
    empty = duckdb.connect()
    empty.execute("CREATE TABLE events AS SELECT * FROM frame")
    with pytest.raises(features.FeatureWindowError, match="events table is empty"):
        features.event_span(empty)
    with pytest.raises(features.FeatureWindowError, match="'user_daily' does not exist"):
        features.compute_features(empty, CUTOFF, 7)
    with pytest.raises(features.FeatureWindowError, match="'user_daily' does not exist"):
        features.daily_span(empty)


def test_features_of_the_synthetic_world(tiny_world):
    con = world_db(tiny_world)
    first, end = features.daily_span(con)
    assert (first, end) == features.event_span(con)
    frame = features.compute_features(con, end, (end - first).days)
    assert frame.height == tiny_world.users.height
    assert frame["user_id"].n_unique() == frame.height
    total = tiny_world.events.filter(pl.col("event_type") == "purchase").height
    assert frame["purchases"].sum() == total
    numeric = [c for c, d in frame.schema.items() if d.is_float()]
    assert not frame.select(pl.col(c).is_nan().any() for c in numeric).to_numpy().any()
    assert set(features.FEATURE_DICTIONARY) >= set(features.NUMERIC_FEATURES) | set(
        features.CATEGORICAL_FEATURES
    )


def features_from_events(events: pl.DataFrame, pages: pl.DataFrame, cutoff, lookback_days):
    """The features recomputed in polars straight from the events: every session that *starts*
    in [cutoff - lookback, cutoff), with all its events (independent of SQL and user_daily)."""
    kinds = pages.select("page_id", "page_type")
    sessions = (
        events.join(kinds, on="page_id", how="left")
        .group_by("session_id")
        .agg(
            pl.col("user_id").first(),
            start=pl.col("event_ts").min(),
            end=pl.col("event_ts").max(),
            events=pl.len(),
            page_views=(pl.col("event_type") == "page_view").sum(),
            engaged=(~pl.col("event_type").is_in(["page_view", "scroll"])).sum(),
            product=(
                (pl.col("event_type") == "page_view") & (pl.col("page_type") == "product")
            ).sum(),
            purchases=(pl.col("event_type") == "purchase").sum(),
            add_to_cart=(pl.col("event_type") == "add_to_cart").sum(),
            revenue=pl.col("revenue").filter(pl.col("event_type") == "purchase").sum(),
        )
        .filter(
            (pl.col("start") >= cutoff - timedelta(days=lookback_days)) & (pl.col("start") < cutoff)
        )
    )
    return sessions.group_by("user_id").agg(
        sessions=pl.len(),
        active_days=pl.col("start").dt.date().n_unique(),
        sessions_last_7d=(pl.col("start") >= cutoff - timedelta(days=7)).sum(),
        events=pl.col("events").sum(),
        page_views=pl.col("page_views").sum(),
        purchases=pl.col("purchases").sum(),
        add_to_cart=pl.col("add_to_cart").sum(),
        revenue=pl.col("revenue").sum(),
        bounce_rate=((pl.col("page_views") == 1) & (pl.col("engaged") == 0)).mean(),
        avg_session_minutes=(pl.col("end") - pl.col("start")).dt.total_microseconds().mean() / 60e6,
        product_share=pl.col("product").sum() / pl.col("page_views").sum(),
        recency_days=((cutoff - pl.col("end").max()).dt.total_microseconds() / 86_400e6).clip(0),
    )


def with_sessions_across_midnights(world, midnights: list[datetime]):
    """The world plus, per midnight, 40 sessions from 23:50 to 00:05 with a purchase after it."""
    users = world.users["user_id"].head(40).to_list()
    rows = [
        _event(f"x{m}-{i}-{j}", user, f"x{m}-{i}", at + offset, kind, "p000", revenue)
        for m, midnight in enumerate(midnights)
        for i, user in enumerate(users)
        for j, (at, offset, kind, revenue) in enumerate(
            [
                (midnight, -timedelta(minutes=10), "page_view", None),
                (midnight, timedelta(minutes=2), "add_to_cart", None),
                (midnight, timedelta(minutes=5), "purchase", 30.0 + i),
            ]
        )
    ]
    planted = pl.DataFrame(rows, schema=EVENTS_SCHEMA).select(world.events.columns)
    return type(world)(
        users=world.users,
        pages=world.pages,
        events=pl.concat([world.events, planted.cast(world.events.schema)]),
        personas=world.personas,
        anomalies=world.anomalies,
    )


@pytest.mark.parametrize("where", ["middle", "end"])
def test_features_equal_a_recomputation_from_the_events_by_session_start_day(tiny_world, where):
    first = datetime(2026, 1, 5)
    cutoff, lookback = (
        (first + timedelta(days=20), 10) if where == "middle" else (first + timedelta(days=42), 14)
    )
    # sessions crossing the cutoff, the window start and a midnight inside the window
    midnights = [cutoff, cutoff - timedelta(days=lookback), cutoff - timedelta(days=3)]
    world = with_sessions_across_midnights(tiny_world, midnights)
    con = world_db(world)
    assert features.daily_span(con)[1] >= cutoff
    computed = features.compute_features(con, cutoff, lookback).filter(pl.col("sessions") > 0)
    expected = features_from_events(world.events, world.pages, cutoff, lookback)
    assert computed.height == expected.height > 100
    columns = [c for c in expected.columns if c != "user_id"]
    joined = computed.select("user_id", *columns).join(
        expected, on="user_id", how="full", suffix="_events"
    )
    for column in columns:
        a = joined[column]
        b = joined[f"{column}_events"].cast(a.dtype)
        if a.dtype.is_float():
            b = b.fill_nan(0.0)  # a session-less share: 0 / 0 in polars
            assert ((a - b).abs() <= 1e-6 * b.abs().clip(1.0)).all(), column
        else:
            assert (a == b).all(), column
    # the planted sessions count, whole, on the day they started
    crossing = joined.filter(pl.col("user_id").is_in(world.users["user_id"].head(40).to_list()))
    assert (crossing["purchases"] >= 2).all()  # the two that started inside the window


def test_the_feature_check_recomputes_from_the_sessions_and_can_fail(tiny_world):
    from ubap_assets.defs.features.checks import features_against_sessions

    con = world_db(tiny_world)
    first, end = features.daily_span(con)
    frame = features.compute_features(con, end, (end - first).days)
    checked, differing = features_against_sessions(con, frame, sample=200)
    assert checked >= 200 and not any(differing.values()), differing
    # features counted by event day, or a lost session, are caught
    wrong = frame.with_columns(
        sessions=pl.col("sessions") + (pl.int_range(pl.len()) % 7 == 0),
        recency_days=pl.col("recency_days") * 1.01,
    )
    _, differing = features_against_sessions(con, wrong, sample=200)
    assert differing["sessions"] > 0 and differing["recency_days"] > 0
    # a mid-history frame is checked against its own window
    middle = features.compute_features(con, first + timedelta(days=20), 10)
    assert not any(features_against_sessions(con, middle)[1].values())


def test_the_future_guard_reads_a_bounded_window_and_can_fail(tiny_world, monkeypatch):
    from ubap_assets.defs.features import checks

    first = datetime(2025, 1, 1)
    # mid-history cutoff; the window before it stops growing with the history
    assert checks.guard_window(first, first + timedelta(days=365)) == (
        first + timedelta(days=182),
        checks.GUARD_LOOKBACK_DAYS,
    )
    assert checks.guard_window(first, first + timedelta(days=10)) == (first + timedelta(5), 5)
    assert checks.guard_window(first, first + timedelta(days=3)) == (first + timedelta(1), 1)

    monkeypatch.setattr(checks, "GUARD_LOOKBACK_DAYS", 6)  # the 42-day world, as a long one
    con = world_db(tiny_world)
    first, end = features.daily_span(con)
    cutoff, lookback, differing = checks.bounded_future_guard(con, first, end)
    assert (cutoff, lookback, differing) == (first + timedelta(days=21), 6, 0)
    # a feature that peeks past its cutoff, or reads before its window, is caught in it
    for wrong_cutoff, wrong_lookback in ((cutoff + timedelta(days=7), lookback + 7), (cutoff, 20)):

        def wrong(con, at, days, user_daily="user_daily", cutoff=wrong_cutoff, look=wrong_lookback):
            return features.compute_features(con, cutoff, look, user_daily=user_daily)

        assert features.future_events_guard(con, cutoff, lookback, compute=wrong) > 0
    # no session in the bounded window: the guard reaches back to the first day
    con.execute(
        "DELETE FROM user_daily WHERE day >= ? AND day < ?", [first + timedelta(15), cutoff]
    )
    cutoff, lookback, differing = checks.bounded_future_guard(con, first, end)
    assert (lookback, differing) == (21, 0)
