"""Segmentation: k by silhouette, profiles, names, canonical ids, the fit on the training
cadence (a run mid-period labels with the fit of the period's boundary), bad input."""

import json
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource
from polars.testing import assert_frame_equal

from tests.conftest import world_db, world_until
from ubap_assets.core import features, segmentation
from ubap_assets.defs.features import assets as feature_assets
from ubap_assets.defs.segments import assets as segment_assets
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager
from ubap_assets.warehouse import tables as t


@pytest.fixture(scope="module")
def world_features(tiny_world):
    con = world_db(tiny_world)  # with the user_daily the features read
    first, end = features.daily_span(con)
    return features.compute_features(con, end, (end - first).days)


@pytest.fixture(scope="module")
def result(world_features, tiny_world):
    return segmentation.segment_users(world_features, k_min=3, k_max=8, seed=0, run_id="run-1")


def test_k_is_the_best_silhouette_in_range(result):
    m = result.metrics
    assert 3 <= m["k"] <= 8
    assert m["k"] == max(result.k_scores, key=result.k_scores.get)
    assert m["silhouette"] == result.k_scores[m["k"]]
    assert m["davies_bouldin"] > 0
    assert -1 <= m["ward_silhouette"] <= 1 and -1 <= m["ward_agreement_ari"] <= 1


def test_segments_cover_every_user(result, world_features):
    s = result.segments
    assert s.height == world_features.height and s["user_id"].n_unique() == s.height
    assert s["segment_id"].n_unique() == result.metrics["k"]
    assert s["ward_segment_id"].n_unique() <= result.metrics["k"]
    assert "persona" not in s.columns  # ground truth stays out of the served tables
    assert s.null_count().sum_horizontal()[0] == 0


def test_profiles_describe_each_segment(result, world_features):
    p = result.profiles
    assert p.height == result.metrics["k"]
    assert p["users"].sum() == world_features.height
    assert p["share"].sum() == pytest.approx(1.0)
    assert p["segment_name"].n_unique() == p.height
    assert ((p["buyer_share"] >= 0) & (p["buyer_share"] <= 1)).all()
    # the profile's conversion rate is the share of its users who bought
    joined = world_features.join(result.segments, on="user_id")
    sid = int(p["segment_id"][0])
    expected = (
        joined.filter(pl.col("segment_id") == sid).select((pl.col("purchases") > 0).mean()).item()
    )
    assert p.filter(pl.col("segment_id") == sid)["buyer_share"][0] == pytest.approx(expected)
    # buyers and bouncers are told apart: the best-converting segment converts far more
    assert p["buyer_share"].max() > 3 * p["buyer_share"].min() + 0.1
    assert any("bouncer" in n.lower() for n in p["segment_name"])


def test_persona_recovery_is_scored_apart_from_the_segments(result, tiny_world):
    scores = segmentation.persona_agreement(result.segments, tiny_world.personas)
    row = scores.row(0, named=True)
    assert row["persona_ari"] is not None and 0.1 < row["persona_ari"] <= 1.0
    assert row["users_scored"] == result.segments.height and row["note"] is None
    assert "persona_ari" not in result.profiles.columns


def test_segment_ids_are_numbered_by_size_whatever_the_row_order(result, world_features):
    p = result.profiles  # labelled on the features it was fitted on: the fit's own sizes
    assert p["segment_id"].to_list() == list(range(p.height))
    assert p["users"].to_list() == sorted(p["users"].to_list(), reverse=True)
    shuffled = world_features.sample(fraction=1.0, shuffle=True, seed=11)
    again = segmentation.segment_users(shuffled, k_min=3, k_max=8, seed=0, run_id="run-1")
    assert_frame_equal(again.profiles, result.profiles)
    assert_frame_equal(again.segments.sort("user_id"), result.segments.sort("user_id"))


def test_a_stored_fit_labels_exactly_as_the_fit_did(result, world_features):
    fit = segmentation.fit_segments(world_features, k_min=3, k_max=8, seed=0)
    stored = segmentation.fit_table(fit)
    assert stored.height == 1 and stored["k"][0] == result.metrics["k"]
    back = segmentation.fit_from_table(stored)
    again = segmentation.assign_segments(world_features, back, run_id="run-1")
    assert_frame_equal(again.segments, result.segments)
    assert_frame_equal(again.profiles, result.profiles)
    assert back.k_scores == result.k_scores
    other = stored.with_columns(
        fit_json=pl.col("fit_json").str.replace('"features": \\[', '"features": ["x", ')
    )
    assert segmentation.fit_from_table(other) is None  # other features: refit, never misread


def _night(con, stored: pl.DataFrame | None, every_days: int = 7):
    """One run at the data end of ``con``: the stored fit while it serves, else a new one;
    the segments, the profiles and the fit in service (a table) and whether it refitted."""
    first, end = features.daily_span(con)
    at_end = features.compute_features(con, end, (end - first).days)
    cutoff, lookback = segmentation.fit_window(first, end, every_days, (end - first).days)
    digest = segmentation.input_digest(con, cutoff, lookback)
    settings = {"k_min": 3, "k_max": 8, "seed": 0}
    fit = segmentation.fit_from_table(stored) if stored is not None else None
    refit = fit is None or not fit.serves(cutoff, lookback, digest, settings)
    if refit:
        fit = segmentation.fit_segments(
            features.compute_features(con, cutoff, lookback), **settings
        )
        fit.cutoff, fit.lookback_days, fit.input_digest = cutoff, lookback, digest
    labelled = segmentation.assign_segments(at_end, fit, run_id="run")
    return labelled, segmentation.fit_table(fit), refit


def test_a_run_mid_period_labels_with_the_fit_of_the_period_s_boundary(tiny_world):
    """Weekly cadence: the night after Monday (the period's first day) fits on the features at
    Monday's midnight; a Thursday run from scratch gets the same fit and ids as the Thursday
    night that kept the stored fit, and labels the users by their features at Thursday."""
    boundary = datetime(2026, 2, 9)  # a Monday: a training boundary
    at_boundary = world_until(tiny_world, boundary + timedelta(days=1), whole_sessions=False)
    thursday = world_until(tiny_world, boundary + timedelta(days=3), whole_sessions=False)
    _, monday_fit, refit = _night(at_boundary, None)
    assert refit and monday_fit["fit_cutoff"][0] == boundary
    kept, kept_fit, refit = _night(thursday, monday_fit)
    assert not refit  # same boundary, same user-days before it: the stored fit serves
    fresh, fresh_fit, refit = _night(thursday, None)
    assert refit
    assert_frame_equal(fresh_fit, kept_fit)
    assert_frame_equal(fresh.segments, kept.segments)
    assert_frame_equal(fresh.profiles, kept.profiles)
    # labelled at Thursday: the profiles describe Thursday's users, with Monday's names
    first, end = features.daily_span(thursday)
    at_end = features.compute_features(thursday, end, (end - first).days)
    assert kept.segments.height == at_end.height
    assert kept.profiles["users"].sum() == at_end.height
    at_monday = features.compute_features(thursday, boundary, (boundary - first).days)
    monday_labels = segmentation.assign_segments(at_monday, segmentation.fit_from_table(kept_fit))
    assert monday_labels.profiles["segment_name"].equals(kept.profiles["segment_name"])
    assert not monday_labels.segments.equals(kept.segments.select(monday_labels.segments.columns))
    # every day a boundary: the Thursday run fits on the features a day before its data end
    _, daily_fit, refit = _night(thursday, kept_fit, every_days=1)
    assert refit and daily_fit["fit_cutoff"][0] == end - timedelta(days=1)


def test_ids_do_not_depend_on_an_earlier_run(tiny_world):
    """A fit stored by an earlier period (or a run on data that later changed) never
    renumbers a new fit: the new one equals a fit with nothing stored."""
    boundary = datetime(2026, 2, 9)
    thursday = world_until(tiny_world, boundary + timedelta(days=3), whole_sessions=False)
    week_before = world_until(tiny_world, boundary - timedelta(days=4), whole_sessions=False)
    _, earlier_fit, _ = _night(week_before, None)
    assert earlier_fit["fit_cutoff"][0] == boundary - timedelta(days=7)
    after_earlier, fit_after_earlier, refit = _night(thursday, earlier_fit)
    assert refit
    from_nothing, fit_from_nothing, _ = _night(thursday, None)
    assert_frame_equal(fit_after_earlier, fit_from_nothing)
    assert_frame_equal(after_earlier.segments, from_nothing.segments)
    # a day before the boundary that was incomplete then (late data, re-ingested since):
    # the user-days before the boundary changed, so the stored fit is redone
    late_day = (boundary - timedelta(days=4)).date()
    late = tiny_world.events.filter(
        (pl.col("event_ts").dt.date() == late_day) & (pl.col("user_id") < "u0000100")
    )["session_id"]
    partial = tiny_world.events.filter(
        (pl.col("event_ts") < boundary + timedelta(days=3)) & ~pl.col("session_id").is_in(late)
    )
    assert late.n_unique() > 0
    w = tiny_world
    incomplete = world_db(type(w)(w.users, w.pages, partial, w.personas, w.anomalies))
    _, stale_fit, _ = _night(incomplete, None)
    _, redone, refit = _night(thursday, stale_fit)
    assert refit and stale_fit["input_digest"][0] != redone["input_digest"][0]
    assert_frame_equal(redone, fit_from_nothing)


def test_the_asset_refits_only_when_the_boundary_moves(tiny_world, tmp_path, monkeypatch):
    """user_segmentation on two nights of one period, then the first night of the next: it
    says in its metadata whether it refitted and on which boundary."""
    monkeypatch.setenv("UBAP_DATA_DIR", str(tmp_path))
    db = str(tmp_path / "warehouse.duckdb")
    resources = {
        "io_manager": DuckDBWarehouseIOManager(database=db),
        "warehouse": DuckDBResource(database=db),
    }
    upstream = [dg.AssetSpec(name) for name in ("users", t.USER_DAILY)]
    assets = [*upstream, feature_assets.user_features, segment_assets.user_segmentation]

    def night(end: datetime) -> dict:
        source = world_until(tiny_world, end, whole_sessions=False)
        with duckdb.connect(db) as con:
            for table in ("users", t.USER_DAILY):
                frame = source.execute(f"SELECT * FROM {table}").pl()  # noqa: F841
                con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM frame")
        result = dg.materialize(assets, resources=resources, raise_on_error=False)
        assert result.success
        (shown,) = [
            m.metadata
            for m in result.asset_materializations_for_node("user_segmentation")
            if m.asset_key.path[-1] == t.SEGMENT_MODEL
        ]
        return {k: v.value for k, v in shown.items()}

    boundary = datetime(2026, 2, 2)  # a Monday
    tuesday = night(boundary + timedelta(days=1))
    assert tuesday["refit"] and tuesday["fit_boundary"] == "2026-02-02T00:00:00"
    wednesday = night(boundary + timedelta(days=2))
    assert not wednesday["refit"] and wednesday["fit_boundary"] == "2026-02-02T00:00:00"
    monday = night(boundary + timedelta(days=8))  # the night after the next period's first day
    assert monday["refit"] and monday["fit_boundary"] == "2026-02-09T00:00:00"
    assert "boundary moved" in monday["refit_reason"]


def test_centroids_are_stored_for_the_next_run(result):
    centroid = json.loads(result.profiles["centroid_json"][0])
    assert list(centroid) == list(features.SEGMENT_FEATURES)
    assert all(np.isfinite(v) for v in centroid.values())


def test_without_personas_ari_is_null_with_the_reason(result, tiny_world):
    no_personas = tiny_world.personas.clear()
    row = segmentation.persona_agreement(result.segments, no_personas).row(0, named=True)
    assert row["persona_ari"] is None and row["users_scored"] == 0
    assert "no ground-truth personas" in row["note"]


def test_too_few_users_for_k_fails_clearly(world_features):
    with pytest.raises(segmentation.SegmentationError, match="too few users for k.*lower k_min"):
        segmentation.segment_users(world_features.head(25), k_min=3, k_max=10)


def test_bad_k_range_fails_clearly(world_features):
    with pytest.raises(segmentation.SegmentationError, match="k_min <= k_max"):
        segmentation.segment_users(world_features, k_min=6, k_max=4)


def test_user_map_projects_the_clustered_users_deterministically(world_features, result):
    user_map = segmentation.user_map(world_features, result.segments, sample=50, seed=0)
    assert user_map.schema == pl.Schema(segmentation.USER_MAP_SCHEMA)
    assert user_map.height == 50 and user_map["user_id"].n_unique() == 50
    assert user_map["x"].is_finite().all() and user_map["y"].is_finite().all()
    joined = user_map.join(result.segments, on="user_id", suffix="_clustered")
    assert joined.height == 50
    assert (joined["segment_id"] == joined["segment_id_clustered"]).all()
    assert (joined["segment_name"] == joined["segment_name_clustered"]).all()
    shuffled = world_features.sample(fraction=1.0, shuffle=True, seed=7)
    again = segmentation.user_map(shuffled, result.segments, sample=50, seed=0)
    assert again.equals(user_map)
    # The first axis carries the most variance of the clustering's own (scaled) features.
    everyone = segmentation.user_map(world_features, result.segments, sample=10**6)
    assert everyone.height == world_features.height
    assert everyone["x"].var() >= everyone["y"].var()


def test_user_map_check_catches_a_map_of_other_segments(world_features, result):
    from ubap_assets.defs.segments.checks import user_map_matches_segments

    user_map = segmentation.user_map(world_features, result.segments, sample=40)
    assert user_map_matches_segments(user_map=user_map, user_segments=result.segments).passed
    relabelled = user_map.with_columns(pl.col("segment_id") + 1)
    check = user_map_matches_segments(user_map=relabelled, user_segments=result.segments)
    assert not check.passed and check.metadata["segment_mismatches"].value == 40
    moved = user_map.with_columns(x=pl.lit(float("nan")))
    assert not user_map_matches_segments(user_map=moved, user_segments=result.segments).passed
