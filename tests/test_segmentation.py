"""Segmentation: k by silhouette, profiles, names, stable ids across runs, bad input."""

import json

import numpy as np
import polars as pl
import pytest
from scipy.optimize import linear_sum_assignment

from tests.conftest import world_db
from ubap_assets.core import features, segmentation


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


def test_segment_ids_are_stable_across_runs(result, world_features, tiny_world):
    # the previous run numbered the same clusters differently: ids must follow the centroids
    previous = result.profiles.with_columns(segment_id=pl.col("segment_id") * 10 + 7)
    noisy = world_features.sample(fraction=0.9, seed=1)
    again = segmentation.segment_users(
        noisy,
        k_min=result.metrics["k"],
        k_max=result.metrics["k"],
        seed=5,
        previous_profiles=previous,
        run_id="run-2",
    )
    old = result.segments.select("user_id", old=pl.col("segment_id") * 10 + 7)
    both = again.segments.join(old, on="user_id")
    agreement = (both["segment_id"] == both["old"]).mean()
    # the best any relabelling could do: Hungarian matching on the contingency table
    table = (
        both.group_by("segment_id", "old")
        .len()
        .pivot(on="old", index="segment_id", values="len")
        .fill_null(0)
        .drop("segment_id")
        .to_numpy()
    )
    rows, cols = linear_sum_assignment(-table)
    best = table[rows, cols].sum() / both.height
    assert agreement >= 0.95 * best, f"{agreement:.0%} kept their id, {best:.0%} possible"
    assert agreement > 0.6
    assert set(again.profiles["segment_id"]) <= set(previous["segment_id"])


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
