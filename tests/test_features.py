"""user_features: values on hand-made events, window bounds, bad input."""

from datetime import date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from tests.conftest import world_db
from ubap_assets.core import features
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.schema import EVENTS_SCHEMA, USERS_SCHEMA
from ubap_assets.core.trends.sessions import build_sessions

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
    # the same bounce as the trends' sessions table, user by user
    build_sessions(con)
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
    with pytest.raises(features.FeatureWindowError, match="no events in"):
        features.compute_features(hand_made(), CUTOFF - timedelta(days=60), 7)
    frame = pl.DataFrame(schema=EVENTS_SCHEMA)  # noqa: F841 - read by DuckDB
    empty = duckdb.connect()
    empty.execute("CREATE TABLE events AS SELECT * FROM frame")
    with pytest.raises(features.FeatureWindowError, match="events table is empty"):
        features.event_span(empty)


def test_features_of_the_synthetic_world(tiny_world):
    con = world_db(tiny_world)
    first, end = features.event_span(con)
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
