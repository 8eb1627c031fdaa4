"""Offline evaluation: the metric formulas, the time split, and every method on a small world."""

from dataclasses import replace
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from tests.conftest import world_db
from ubap_assets.core import recommend
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.recommend import evaluation
from ubap_assets.lib.embedder import HashingEmbedder


def test_metrics_match_hand_computation():
    # one user, relevant pages {1, 3}; ranking [1, 0, 3] -> hits at ranks 1 and 3
    relevant = np.array([[False, True, False, True, False]])
    top = np.array([[1, 0, 3]])
    m = evaluation.ranking_metrics(top, relevant, k=3)
    dcg = 1 / np.log2(2) + 1 / np.log2(4)
    idcg = 1 / np.log2(2) + 1 / np.log2(3)
    assert m["hr"][0] == 1.0
    assert m["ndcg"][0] == pytest.approx(dcg / idcg)
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["ap"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    miss = evaluation.ranking_metrics(np.array([[0, 2, 4]]), relevant, k=3)
    assert miss["hr"][0] == miss["ndcg"][0] == miss["ap"][0] == 0.0


def test_time_windows():
    end = datetime(2026, 3, 1)
    windows = evaluation.time_windows(end, test_days=7, validation_days=14)
    assert windows.cutoff == datetime(2026, 2, 22) and windows.test_end == end
    assert windows.validation_start == datetime(2026, 2, 8)
    assert evaluation.time_windows(end, 7).validation_start == datetime(2026, 2, 15)
    with pytest.raises(recommend.RecommendationError, match="test_days"):
        evaluation.time_windows(end, 0)


@pytest.fixture(scope="module")
def world_con(tiny_world):
    return world_db(tiny_world)


@pytest.fixture(scope="module")
def catalogue(tiny_world):
    texts = recommend.page_texts(tiny_world.pages)
    embeddings = recommend.embeddings_frame(
        texts, HashingEmbedder().embed(texts["text"].to_list()), "h"
    )
    return recommend.build_catalogue(tiny_world.pages, embeddings, recommend.RecommenderParams())


FAST_GRID = evaluation.TuningGrid(
    half_lives=(None, 30.0), ease_lambdas=(50.0, 500.0), weights=((0.1, 0.85, 0.05),)
)


@pytest.fixture(scope="module")
def default_result(world_con, catalogue):
    return evaluation.run_evaluation(
        world_con, catalogue, recommend.RecommenderParams(), None, grid=FAST_GRID
    )


def test_every_method_on_the_test_window_with_intervals(default_result):
    result = default_result
    assert result["method"].to_list() == list(evaluation.METHODS)
    assert set(result["status"]) == {"ok"}
    assert result["users_evaluated"].n_unique() == 1 and result["users_evaluated"][0] >= 100
    assert result["validation_users"][0] >= 100
    for col in ("hr_at_k", "ndcg_at_k", "recall_at_k", "map_at_k", "coverage"):
        assert result[col].is_between(0.0, 1.0).all(), col
    assert (result["ndcg_ci_low"] <= result["ndcg_at_k"]).all()
    assert (result["ndcg_at_k"] <= result["ndcg_ci_high"]).all()
    assert (result["ndcg_ci_high"] - result["ndcg_ci_low"] > 0).all()
    assert (result["recall_ci_low"] <= result["recall_at_k"]).all()
    ndcg = dict(zip(result["method"], result["ndcg_at_k"], strict=True))
    assert ndcg["global_popularity"] > ndcg["random"]
    assert ndcg["hybrid"] > ndcg["global_popularity"], ndcg
    assert ndcg["item_knn"] > ndcg["global_popularity"], ndcg
    # global popularity minus itself is exactly zero
    popularity = result.filter(pl.col("method") == "global_popularity").row(0, named=True)
    assert popularity["ndcg_minus_popularity_ci_low"] == 0.0
    # without segments the segment baseline is global popularity, and the note says so
    assert ndcg["segment_popularity"] == ndcg["global_popularity"]
    assert "segment popularity = global" in result["note"][0]
    windows = result.row(0, named=True)
    assert windows["validation_start_ts"] + timedelta(days=7) == windows["cutoff_ts"]
    assert windows["cutoff_ts"] + timedelta(days=7) == windows["test_end_ts"]


def test_served_is_the_better_of_hybrid_and_its_best_component_on_validation(default_result):
    result = default_result
    assert result["is_served"].sum() == 1
    served = result.filter(pl.col("is_served")).row(0, named=True)
    hybrid = result.filter(pl.col("method") == "hybrid").row(0, named=True)
    components = result.filter(pl.col("method").is_in(["content", "ease", "segment_popularity"]))
    best = components.sort("validation_ndcg_at_k", descending=True).row(0, named=True)
    expected = (
        "hybrid"
        if hybrid["validation_ndcg_at_k"] >= best["validation_ndcg_at_k"]
        else (best["method"])
    )
    assert served["method"] == expected and served["selection"].startswith("served: ")
    assert best["method"] in hybrid["selection"] and best["selection"]
    # the tuned knobs come from the grid
    assert set(result["ease_lambda"]) <= {50.0, 500.0}
    assert set(result["half_life_days"].to_list()) <= {None, 30.0}


def test_served_params_follow_the_served_row(default_result):
    from ubap_assets.core.recommend import tuning

    params, selection = tuning.served_params(default_result, recommend.RecommenderParams())
    served = default_result.filter(pl.col("is_served")).row(0, named=True)
    assert selection == served["selection"]
    assert params.ease_lambda == served["ease_lambda"]
    assert params.half_life_days == served["half_life_days"]
    if served["method"] == "ease":
        assert params.component_weights == {"content": 0, "collaborative": 1, "popularity": 0}


def test_tiny_catalogue_is_insufficient_data_not_a_shrunk_k(world_con, tiny_world):
    six = tiny_world.pages.filter(pl.col("page_type") == "product").head(6)
    params = recommend.RecommenderParams()
    small = recommend.build_catalogue(six, None, params)
    result = evaluation.run_evaluation(world_con, small, params, None, grid=FAST_GRID)
    assert set(result["status"]) == {"insufficient data"}
    assert set(result["k"]) == {10} and set(result["candidate_pages"]) == {6}
    assert result["ndcg_at_k"].null_count() == result.height
    assert result["coverage"].null_count() == result.height
    assert "k = 10 is not smaller than the 6 candidate pages" in result["note"][0]


def test_few_evaluated_users_is_insufficient_data(world_con, catalogue):
    result = evaluation.run_evaluation(
        world_con, catalogue, recommend.RecommenderParams(), None, grid=FAST_GRID, min_users=5000
    )
    assert set(result["status"]) == {"insufficient data"}
    users = result["users_evaluated"][0]
    assert (
        0 < users < 5000
        and f"test window has {users} evaluable users (< 5000)" in (result["note"][0])
    )
    assert "insufficient data to tune" in result["note"][0]
    assert result["ndcg_at_k"].null_count() == result.height
    assert result.filter(pl.col("is_served"))["method"].to_list() == ["hybrid"]


@pytest.mark.parametrize("policy", ["engaged", "converted"])
def test_evaluation_hides_exactly_what_the_served_lists_hide(world_con, catalogue, policy):
    from ubap_assets.core.recommend import scoring, tuning

    params = recommend.RecommenderParams(exclude=policy)
    end = recommend.data_end(world_con)
    windows = evaluation.time_windows(end, 7)
    model = tuning.fit_until(world_con, catalogue, params, None, windows.cutoff)
    pairs = recommend.engaged_pages(world_con, windows.cutoff, windows.test_end)
    hidden = model.exclusion_matrix() > 0
    relevance = scoring.relevance_matrix(model, pairs)
    assert relevance.multiply(hidden).nnz == 0  # a hidden page never counts as a hit
    # the pages the served lists drop are the pages the evaluation's rankings drop
    users = np.arange(model.train.n_users)
    assert np.array_equal(model.excluded(users), hidden.toarray())
    lists = recommend.recommendation_lists(model, model.train.user_ids, end)
    served = lists.join(model.train.user_rows(), on="user_id").with_columns(
        page_index=pl.col("page_id").replace_strict(
            {p: i for i, p in enumerate(catalogue.page_ids)}, return_dtype=pl.Int64
        )
    )
    flags = hidden[served["train_index"].to_numpy(), served["page_index"].to_numpy()]
    assert np.asarray(flags).sum() == 0
    if policy == "converted":  # viewed-but-not-bought pages stay: relevant and servable
        assert model.train.engaged.nnz > model.train.converted.nnz
    scores = scoring.score_window(model, pairs, {"ease": ("ease", None)}, params.k)
    assert 0 <= scores.coverage["ease"] <= 1


def test_bootstrap_interval_is_seeded_and_paired():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    series = {"a": a, "b": a + 0.1, "diff": np.full(300, 0.1)}
    first = evaluation.bootstrap_intervals(series, 400, seed=5)
    assert first == evaluation.bootstrap_intervals(series, 400, seed=5)
    low, high = first["a"]
    assert low < a.mean() < high
    assert first["b"][0] == pytest.approx(low + 0.1) and first["diff"] == pytest.approx((0.1, 0.1))


def test_no_training_data_is_reported_not_crashed(catalogue):
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (event_id VARCHAR, user_id VARCHAR, session_id VARCHAR, "
        "event_ts TIMESTAMP, event_type VARCHAR, page_id VARCHAR, device VARCHAR, "
        "traffic_source VARCHAR, revenue DOUBLE)"
    )
    con.execute(
        "INSERT INTO events VALUES ('e', 'u', 's', TIMESTAMP '2026-03-01 10:00', "
        "'page_view', 'p010', 'mobile', 'organic', NULL)"
    )
    build_all_daily(con)
    result = evaluation.run_evaluation(con, catalogue, recommend.RecommenderParams(), segments=None)
    assert result["users_evaluated"].max() == 0
    assert set(result["status"]) == {"insufficient data"}
    assert "0 evaluable users" in result["note"][0]
    assert result["ndcg_at_k"].null_count() == result.height


def _check_outcome(frame: pl.DataFrame) -> list:
    """The hybrid_beats_popularity evaluations when rec_evaluation is ``frame``."""
    import dagster as dg

    from ubap_assets.defs.recommendations import checks

    @dg.asset(name="rec_evaluation")
    def stand_in() -> pl.DataFrame:
        return frame

    result = dg.materialize([stand_in, checks.hybrid_beats_popularity])
    assert result.success
    return result.get_asset_check_evaluations()


def test_hybrid_beats_popularity_can_fail_and_is_skipped_without_data(default_result):
    ok = _check_outcome(default_result)
    assert len(ok) == 1
    hybrid = default_result.filter(pl.col("method") == "hybrid").row(0, named=True)
    assert ok[0].passed == (hybrid["ndcg_minus_popularity_ci_low"] > 0)
    # the hybrid ahead on average but the interval reaching below 0: not a pass
    straddling = default_result.with_columns(
        ndcg_minus_popularity_ci_low=pl.when(pl.col("method") == "hybrid")
        .then(-0.05)
        .otherwise(pl.col("ndcg_minus_popularity_ci_low"))
    )
    failed = _check_outcome(straddling)
    assert len(failed) == 1 and failed[0].passed is False
    # too few users: no result at all, which Dagster records as SKIPPED
    few = default_result.with_columns(
        status=pl.lit("insufficient data"), ndcg_at_k=None, users_evaluated=pl.lit(37)
    )
    assert _check_outcome(few) == []


def test_windows_ending_at_the_training_boundary_ignore_later_days(tiny_world, catalogue):
    from ubap_assets.core import cadence

    # Two nights of the same training period: data to Thursday and data to Saturday.
    last_day = tiny_world.events["event_ts"].max().date()
    thursday, saturday = last_day - timedelta(days=4), last_day - timedelta(days=2)

    def evaluated_up_to(day):
        events = tiny_world.events.filter(pl.col("event_ts").dt.date() <= day)
        con = world_db(replace(tiny_world, events=events))
        boundary = cadence.training_end(recommend.data_end(con), 7)
        result = evaluation.run_evaluation(
            con, catalogue, recommend.RecommenderParams(), None, grid=FAST_GRID, end=boundary
        )
        return boundary, result

    boundary, on_thursday = evaluated_up_to(thursday)
    later_boundary, on_saturday = evaluated_up_to(saturday)
    assert boundary == later_boundary and boundary.weekday() == 0  # the Monday before
    assert set(on_thursday["test_end_ts"]) == {boundary}
    assert set(on_thursday["status"]) == {"ok"}
    assert on_thursday.equals(on_saturday)


def _evaluated(world_con, catalogue, **limits) -> pl.DataFrame:
    """The fast-grid evaluation with default knobs and the given user limits."""
    params = recommend.RecommenderParams()
    return evaluation.run_evaluation(world_con, catalogue, params, None, grid=FAST_GRID, **limits)


def test_test_figures_on_a_sample_of_test_users_say_so(world_con, catalogue, default_result):
    everyone = default_result["users_evaluated"][0]
    sampled = _evaluated(world_con, catalogue, max_test_users=everyone // 2)
    assert sampled["users_evaluated"].unique().to_list() == [everyone // 2]
    note = sampled["note"][0]
    assert f"sample of {everyone // 2:,} of the {everyone:,} evaluable test users" in note
    assert f"resamples of the {everyone // 2} test users" in note
    assert "evaluable test users" not in default_result["note"][0]
    # tuning is untouched, and every figure is still computed with its interval
    knobs = ["validation_users", "validation_ndcg_at_k", "half_life_days", "ease_lambda"]
    assert sampled.select(knobs).equals(default_result.select(knobs))
    assert sampled.select(evaluation.METRIC_COLUMNS).null_count().sum_horizontal()[0] == 0
    assert (sampled["ndcg_ci_high"] - sampled["ndcg_ci_low"] > 0).all()


def test_one_read_gives_each_half_life_the_matrices_of_its_own_read(world_con, catalogue):
    from ubap_assets.core.recommend.interactions import load_training, load_training_by_half_life

    params = recommend.RecommenderParams()
    end = recommend.data_end(world_con) - timedelta(days=7)
    half_lives = (None, 30.0, 0.5, 30.0)  # 0.5: 24-day periods, several; a repeat is read once
    together = load_training_by_half_life(world_con, None, end, params, catalogue, half_lives)
    assert list(together) == [None, 30.0, 0.5]
    for half_life, matrices in together.items():
        alone = load_training(
            world_con, None, end, replace(params, half_life_days=half_life), catalogue
        )
        assert np.array_equal(alone.user_ids, matrices.user_ids)
        assert alone.n_rows == matrices.n_rows
        for name in ("strength", "converted", "engaged"):
            a, b = getattr(alone, name), getattr(matrices, name)
            assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            assert np.array_equal(a.data, b.data), (half_life, name)  # the same bits
    # the decay differs, so the weights do (the test would pass on one copy three times)
    assert not np.array_equal(together[None].strength.data, together[0.5].strength.data)


def test_tuning_on_a_sample_of_validation_users_says_so(world_con, catalogue, default_result):
    from ubap_assets.core.recommend import scoring, tuning
    from ubap_assets.core.sampling import sample_mask

    everyone = default_result["validation_users"][0]
    sampled = _evaluated(world_con, catalogue, max_tuning_users=everyone // 2)
    assert sampled["validation_users"].unique().to_list() == [everyone // 2]
    assert (
        f"sample of {everyone // 2:,} of the {everyone:,} evaluable validation users"
        in (sampled["note"][0])
    )
    # the test window's figures use every evaluable user unless max_test_users cuts them
    assert sampled["users_evaluated"][0] == default_result["users_evaluated"][0]
    assert "validation users" not in default_result["note"][0]

    params = recommend.RecommenderParams()
    end = recommend.data_end(world_con)
    windows = evaluation.time_windows(end, 7)
    model = tuning.fit_until(world_con, catalogue, params, None, windows.cutoff)
    pairs = recommend.engaged_pages(world_con, windows.cutoff, windows.test_end)
    variants = {"ease": ("ease", None)}
    full = scoring.score_window(model, pairs, variants, params.k)
    relevance = scoring.window_relevance(model.train, catalogue, params.exclude, pairs)
    ids = scoring.evaluable_users(model.train, relevance)
    assert len(ids) == full.n_users == full.evaluable
    only = ids[sample_mask(ids.tolist(), full.n_users // 3)]
    cut = scoring.score_window(model, pairs, variants, params.k, only=only, relevance=relevance)
    assert cut.n_users == full.n_users // 3 and cut.evaluable == full.n_users
    assert set(cut.users) < set(full.users)
    assert set(model.train.user_ids[cut.users]) == set(only)
    # a user's metrics do not depend on who else was scored
    position = np.searchsorted(full.users, cut.users)
    assert np.allclose(cut.per_user["ease"]["ndcg"], full.per_user["ease"]["ndcg"][position])
