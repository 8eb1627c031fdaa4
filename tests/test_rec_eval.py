"""Offline evaluation: the metric formulas, the time split, and every method on a small world."""

from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from ubap_assets.core import recommend
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


def test_time_split():
    end = datetime(2026, 3, 1)
    split = evaluation.time_split(end, test_days=7, history_days=30)
    assert split.cutoff == datetime(2026, 2, 22) and split.test_end == end
    assert split.train_start == datetime(2026, 1, 23)
    with pytest.raises(recommend.RecommendationError, match="test_days"):
        evaluation.time_split(end, 0, 30)


@pytest.fixture(scope="module")
def world_con(tiny_world):
    con = duckdb.connect()
    con.register("_ev", tiny_world.events)
    con.execute("CREATE TABLE events AS SELECT * FROM _ev")
    return con


@pytest.fixture(scope="module")
def catalogue(tiny_world):
    texts = recommend.page_texts(tiny_world.pages)
    embeddings = recommend.embeddings_frame(
        texts, HashingEmbedder().embed(texts["text"].to_list()), "h"
    )
    return recommend.build_catalogue(tiny_world.pages, embeddings, recommend.RecommenderParams())


def test_every_method_on_one_split(world_con, catalogue):
    result = evaluation.run_evaluation(
        world_con, catalogue, recommend.RecommenderParams(), segments=None
    )
    assert result["method"].to_list() == list(evaluation.METHODS)
    assert result["users_evaluated"].n_unique() == 1 and result["users_evaluated"][0] > 100
    for col in ("hr_at_k", "ndcg_at_k", "recall_at_k", "map_at_k", "coverage"):
        assert result[col].is_between(0.0, 1.0).all(), col
    assert not any(result[c].is_nan().any() for c in ("ndcg_at_k", "novelty"))
    ndcg = dict(zip(result["method"], result["ndcg_at_k"], strict=False))
    assert ndcg["global_popularity"] > ndcg["random"]
    assert ndcg["hybrid"] > ndcg["global_popularity"], ndcg
    assert ndcg["item_knn"] > ndcg["global_popularity"], ndcg
    # without segments the segment baseline is global popularity, and the note says so
    assert ndcg["segment_popularity"] == ndcg["global_popularity"]
    assert "segment popularity = global" in result["note"][0]
    cov = dict(zip(result["method"], result["coverage"], strict=False))
    assert cov["random"] > cov["global_popularity"]
    assert result["cutoff_ts"][0] + timedelta(days=7) == result["test_end_ts"][0]


def test_seen_pages_never_count_as_hits(world_con, catalogue):
    params = recommend.RecommenderParams()
    split = evaluation.time_split(recommend.data_end(world_con), 7, params.history_days)
    train = recommend.build_interactions(
        recommend.load_interactions(world_con, split.train_start, split.cutoff, params), catalogue
    )
    model = recommend.fit(catalogue, train, params)
    # a test set that only repeats training pages leaves nobody to evaluate
    seen = pl.DataFrame({"user_id": train.user_ids[:50]}).join(
        pl.DataFrame({"user_id": train.user_ids, "_u": np.arange(train.n_users)}), on="user_id"
    )
    pairs = [
        (u, catalogue.page_ids[train.strength[i].indices[0]])
        for u, i in seen.iter_rows()
        if train.strength[i].nnz
    ]
    result = evaluation.evaluate(
        model, pl.DataFrame(pairs, schema=["user_id", "page_id"], orient="row"), split
    )
    assert result["users_evaluated"].max() == 0
    assert "has a new page in the test window" in result["note"][0]
    assert result["ndcg_at_k"].sum() == 0.0


def test_segments_change_the_segment_baseline(world_con, catalogue, tiny_world):
    segments_frame = tiny_world.personas.select(
        "user_id",
        segment_id=pl.col("favourite_category"),
        segment_name=pl.col("favourite_category"),
    )
    result = evaluation.run_evaluation(
        world_con, catalogue, recommend.RecommenderParams(), segments=segments_frame
    )
    ndcg = dict(zip(result["method"], result["ndcg_at_k"], strict=False))
    assert ndcg["segment_popularity"] > ndcg["global_popularity"]


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
    result = evaluation.run_evaluation(con, catalogue, recommend.RecommenderParams(), segments=None)
    assert result["users_evaluated"].max() == 0
    assert result["note"][0]
