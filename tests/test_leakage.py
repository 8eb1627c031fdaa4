"""Leakage guards: features ignore the future, label windows are disjoint, labels equal a
recomputation from the events by session start day, and a label that leaked into a feature is
caught."""

from dataclasses import replace
from datetime import datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import world_db
from ubap_assets.core import features, models
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.schema import EVENTS_SCHEMA


@pytest.fixture(scope="module")
def world_con(tiny_world):
    return world_db(tiny_world)


@pytest.fixture(scope="module")
def plan(world_con):
    first, end = features.daily_span(world_con)
    return features.plan_windows(first, end)


def _plant(con, rows: list[dict]) -> None:
    planted = pl.DataFrame(rows, schema=EVENTS_SCHEMA)  # noqa: F841 - read by DuckDB
    con.execute("INSERT INTO events SELECT * FROM planted")
    build_all_daily(con)  # the sessions and user_daily the features read


def test_planted_future_events_change_no_feature(tiny_world, plan):
    con = world_db(tiny_world)
    before = features.compute_features(con, plan.train_cutoff, plan.lookback_days)
    users = before["user_id"].head(50).to_list()
    at = plan.train_cutoff
    rows = []
    for i, user in enumerate(users):
        # a whole future session with a big purchase, one exactly at the cutoff
        for j, (kind, rev) in enumerate(
            (("page_view", None), ("add_to_cart", None), ("purchase", 5000.0))
        ):
            rows.append(
                {
                    "event_id": f"planted-{i}-{j}",
                    "user_id": user,
                    "session_id": f"planted-{i}",
                    "event_ts": at + timedelta(seconds=j if i % 2 else 3600 * (1 + j)),
                    "event_type": kind,
                    "page_id": "p000",
                    "device": "desktop",
                    "traffic_source": "email",
                    "revenue": rev,
                }
            )
    _plant(con, rows)
    after = features.compute_features(con, plan.train_cutoff, plan.lookback_days)
    assert_frame_equal(after, before, rtol=1e-9)  # floats: parallel sums may reorder
    # ... while the same events, planted one microsecond earlier, do change them.
    earlier = [
        {
            **r,
            "event_id": r["event_id"] + "-past",
            "session_id": r["session_id"] + "-past",
            "event_ts": plan.train_cutoff - timedelta(microseconds=1),
        }
        for r in rows
    ]
    _plant(con, earlier)
    changed = features.compute_features(con, plan.train_cutoff, plan.lookback_days)
    with pytest.raises(AssertionError):
        assert_frame_equal(changed, before, rtol=1e-9)
    assert changed["purchases"].sum() == before["purchases"].sum() + len(users)


def test_future_events_guard_on_the_world(world_con, plan):
    future = world_con.execute(
        "SELECT count(*) FROM events WHERE event_ts >= ?", [plan.train_cutoff]
    ).fetchone()[0]
    assert future > 0
    assert features.future_events_guard(world_con, plan.train_cutoff, plan.lookback_days) == 0


def test_the_guard_catches_a_feature_that_peeks_past_its_cutoff(world_con, plan):
    def peeking(con, cutoff, lookback_days, user_daily="user_daily"):
        # a bug: the window ends a week after the cutoff
        return features.compute_features(
            con, cutoff + timedelta(days=7), lookback_days, user_daily=user_daily
        )

    changed = features.future_events_guard(
        world_con, plan.train_cutoff, plan.lookback_days, compute=peeking
    )
    assert changed > 0


# The labels straight from the events: a user's sessions that *start* in [cutoff, end).
_SESSIONS_STARTING_IN_WINDOW = """
WITH s AS (
    SELECT session_id, any_value(user_id) AS user_id, min(event_ts) AS started,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           count(*) FILTER (WHERE event_type = 'page_view') AS views,
           count(*) FILTER (WHERE event_type NOT IN ('page_view', 'scroll')) AS engaged
    FROM events GROUP BY session_id
)
SELECT user_id, bool_or(purchases > 0) AS buys,
       arg_min(views = 1 AND engaged = 0, (started, session_id)) AS first_bounced
FROM s WHERE started >= ? AND started < ? GROUP BY user_id
"""


def test_labels_equal_a_recomputation_from_the_events(world_con, plan):
    start, end = plan.label_window("train")
    expected = world_con.execute(_SESSIONS_STARTING_IN_WINDOW, [start, end]).pl()
    feats = features.compute_features(world_con, plan.train_cutoff, plan.lookback_days)
    conversion = features.conversion_labels(world_con, feats, start, plan.horizon_days)
    buyers = set(expected.filter("buys")["user_id"].to_list())
    assert set(conversion.filter("label")["user_id"].to_list()) == buyers & set(feats["user_id"])
    assert len(buyers) > 20
    bounce = features.bounce_labels(world_con, feats, start, plan.horizon_days)
    known = expected.filter(pl.col("user_id").is_in(feats["user_id"].to_list()))
    assert dict(bounce.select("user_id", "label").rows()) == dict(
        known.select("user_id", "first_bounced").rows()
    )
    assert bounce["label"].sum() > 20 and (~bounce["label"]).sum() > 20


def test_three_windows_are_disjoint_and_in_order(plan):
    models.check_windows(plan)
    windows = [plan.label_window(split) for split in features.SPLITS]
    assert [w[1] - w[0] for w in windows] == [timedelta(days=plan.horizon_days)] * 3
    (train_start, train_end), (valid_start, valid_end), (test_start, test_end) = windows
    assert train_end <= valid_start and valid_end <= test_start and test_end <= plan.end
    # every feature window ends at its cutoff, before its own labels begin
    assert plan.train_cutoff - timedelta(days=plan.lookback_days) >= plan.first_day
    assert (train_start, valid_start, test_start) == (
        plan.train_cutoff,
        plan.valid_cutoff,
        plan.test_cutoff,
    )


@pytest.mark.parametrize("days", [28, 35, 42, 60, 90, 365])
def test_planned_windows_never_overlap(days):
    first = datetime(2026, 1, 1)
    plan = features.plan_windows(first, first + timedelta(days=days))
    models.check_windows(plan)
    assert plan.train_cutoff - timedelta(days=plan.lookback_days) >= first
    assert features.MIN_HORIZON_DAYS <= plan.horizon_days <= features.DEFAULT_HORIZON_DAYS
    assert bool(plan.horizon_note) == (plan.horizon_days < features.DEFAULT_HORIZON_DAYS)
    # an explicit horizon is used as given, or fails
    assert features.plan_windows(first, first + timedelta(days=days), 7).horizon_days == 7
    if days < 3 * 14 + 7:
        with pytest.raises(features.FeatureWindowError, match="empty window"):
            features.plan_windows(first, first + timedelta(days=days), horizon_days=14)


def test_overlapping_windows_are_rejected(plan):
    overlapping = replace(plan, valid_cutoff=plan.train_cutoff + timedelta(days=3))
    with pytest.raises(models.LeakageError, match="overlap or are out of order"):
        models.check_windows(overlapping)
    swapped = replace(plan, valid_cutoff=plan.test_cutoff, test_cutoff=plan.valid_cutoff)
    with pytest.raises(models.LeakageError):
        models.check_windows(swapped)


def test_labels_read_only_their_window(world_con, plan):
    for split in features.SPLITS:
        cutoff = plan.cutoff(split)
        feats = features.compute_features(world_con, cutoff, plan.lookback_days)
        for task, labeller in models.LABELLERS.items():
            guard = features.label_window_guard(
                world_con, feats, cutoff, plan.horizon_days, labeller
            )
            assert guard == 0, task

    def peeking(con, frame, cutoff, horizon_days, **tables):
        # a bug: the label window starts a day before the cutoff
        return features.conversion_labels(
            con, frame, cutoff - timedelta(days=1), horizon_days + 1, **tables
        )

    feats = features.compute_features(world_con, plan.valid_cutoff, plan.lookback_days)
    assert (
        features.label_window_guard(world_con, feats, plan.valid_cutoff, plan.horizon_days, peeking)
        > 0
    )


def test_a_label_derivable_from_the_features_is_caught(world_con, plan):
    train, valid, test = models.training_data(world_con, plan, "conversion")
    # the label leaks into a feature: "purchases" now counts the future purchase too
    leaky = train.with_columns(
        purchases=pl.col("purchases") * 0 + pl.col("label").cast(pl.Int64) * 3
    )
    with pytest.raises(models.LeakageError, match="purchases.*derivable"):
        models.train_task("conversion", leaky, valid, test, plan)
    probe = models.max_single_feature_auc(train, models.Design.fit(train))
    assert not probe.leaked, f"{probe.feature} separates the honest labels: {probe}"
    assert probe.ci_low <= probe.auc


def test_a_tiny_sample_raises_no_leakage_alarm(world_con, plan):
    """A feature that separates 40 users perfectly is noise, not proof of a leak: the task is
    insufficient data, and the probe's interval is wide."""
    train, valid, test = models.training_data(world_con, plan, "conversion")
    tiny = pl.concat([train.filter("label").head(6), train.filter(~pl.col("label")).head(34)])
    separating = tiny.with_columns(recency_days=pl.col("label").cast(pl.Float64))
    result = models.train_task("conversion", separating, valid, test, plan)
    assert result.status == models.INSUFFICIENT and "6 positives" in result.note
    probe = models.max_single_feature_auc(separating, models.Design.fit(separating))
    assert probe.auc == probe.ci_low == 1.0  # the bootstrap of a perfect split is perfect
    assert not probe.leaked  # but 6 positives are no evidence
    enough = pl.concat([train.filter("label").head(60), train.filter(~pl.col("label")).head(60)])
    enough = enough.with_columns(recency_days=pl.col("label").cast(pl.Float64))
    assert models.max_single_feature_auc(enough, models.Design.fit(enough)).leaked


def test_the_label_check_recomputes_from_the_sessions_and_can_fail(world_con, plan):
    from ubap_assets.defs.models.checks import labels_against_sessions

    cutoff = plan.valid_cutoff
    feats = features.compute_features(world_con, cutoff, plan.lookback_days)
    for task, labeller in models.LABELLERS.items():
        labelled = labeller(world_con, feats, cutoff, plan.horizon_days)
        assert labels_against_sessions(world_con, labelled, task, cutoff, plan.horizon_days) == 0
        flipped = labelled.with_columns(label=~pl.col("label"))
        wrong = labels_against_sessions(world_con, flipped, task, cutoff, plan.horizon_days)
        assert wrong == labelled.height, task
    # a label read from the day before the cutoff (a session that started earlier) differs
    early = features.conversion_labels(world_con, feats, cutoff - timedelta(days=1), 1)
    assert labels_against_sessions(world_con, early, "conversion", cutoff, 1) > 0
