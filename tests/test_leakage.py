"""Leakage guards: features ignore the future, label windows are disjoint, and a label that
leaked into a feature is caught."""

from datetime import datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import world_db
from ubap_assets.core import features, models
from ubap_assets.core.schema import EVENTS_SCHEMA


@pytest.fixture(scope="module")
def world_con(tiny_world):
    return world_db(tiny_world)


@pytest.fixture(scope="module")
def plan(world_con):
    first, end = features.event_span(world_con)
    return features.plan_windows(first, end, horizon_days=14)


def _plant(con, rows: list[dict]) -> None:
    planted = pl.DataFrame(rows, schema=EVENTS_SCHEMA)  # noqa: F841 - read by DuckDB
    con.execute("INSERT INTO events SELECT * FROM planted")


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
    def peeking(con, cutoff, lookback_days, events="events"):
        # a bug: the window ends a week after the cutoff
        return features.compute_features(
            con, cutoff + timedelta(days=7), lookback_days, events=events
        )

    changed = features.future_events_guard(
        world_con, plan.train_cutoff, plan.lookback_days, compute=peeking
    )
    assert changed > 0


def test_labels_only_read_their_window(world_con, plan):
    feats = features.compute_features(world_con, plan.train_cutoff, plan.lookback_days)
    labels = features.conversion_labels(world_con, feats, plan.train_cutoff, plan.horizon_days)
    buyers = set(
        world_con.execute(
            "SELECT DISTINCT user_id FROM events WHERE event_type = 'purchase' "
            "AND event_ts >= ? AND event_ts < ?",
            [plan.train_cutoff, plan.valid_cutoff],
        )
        .pl()["user_id"]
        .to_list()
    )
    assert set(labels.filter("label")["user_id"].to_list()) == buyers & set(feats["user_id"])


def test_training_and_validation_windows_do_not_overlap(plan):
    models.check_windows(plan)
    train_labels = (plan.train_cutoff, plan.train_cutoff + timedelta(days=plan.horizon_days))
    valid_labels = (plan.valid_cutoff, plan.valid_cutoff + timedelta(days=plan.horizon_days))
    assert train_labels[1] <= valid_labels[0]
    assert valid_labels[1] <= plan.end
    # every feature window ends at its cutoff, before its own labels begin
    assert plan.train_cutoff <= train_labels[0] and plan.valid_cutoff <= valid_labels[0]


@pytest.mark.parametrize("days", [35, 42, 60, 90, 365])
def test_planned_windows_never_overlap(days):
    first = datetime(2026, 1, 1)
    plan = features.plan_windows(first, first + timedelta(days=days), horizon_days=14)
    models.check_windows(plan)
    assert plan.train_cutoff - timedelta(days=plan.lookback_days) >= first


def test_overlapping_windows_are_rejected(plan):
    overlapping = features.TimePlan(
        plan.first_day,
        plan.end,
        plan.train_cutoff,
        plan.train_cutoff + timedelta(days=3),
        plan.horizon_days,
        plan.lookback_days,
    )
    with pytest.raises(models.LeakageError, match="runs into the validation"):
        models.check_windows(overlapping)


def test_a_label_derivable_from_the_features_is_caught(world_con, plan):
    train, valid = models.training_data(world_con, plan, "conversion")
    # the label leaks into a feature: "purchases" now counts the future purchase too
    leaky = train.with_columns(
        purchases=pl.col("purchases") * 0 + pl.col("label").cast(pl.Int64) * 3
    )
    with pytest.raises(models.LeakageError, match="purchases.*derivable"):
        models.train_task("conversion", leaky, valid, plan)
    name, auc = models.max_single_feature_auc(train, models.Design.fit(train))
    assert auc < models.LEAKAGE_AUC, f"{name} separates the honest labels: {auc}"
