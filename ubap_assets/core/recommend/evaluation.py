"""Offline evaluation of the recommenders on a time-based split (Dagster-free).

Train on events before a cutoff T, test on the pages each user engages with in [T, T + days).
Every method ranks the whole candidate catalogue; pages the user touched in training are
excluded from both the ranking and the relevant set (only new pages count). All methods are
scored on the same users in the same run, so the table compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.interactions import (
    build_interactions,
    data_end,
    engaged_pages,
    load_interactions,
    row_index,
)
from ubap_assets.core.recommend.params import RecommendationError, RecommenderParams
from ubap_assets.core.recommend.ranking import BLOCK_SIZE, minmax_rows, top_k
from ubap_assets.core.recommend.render import list_length
from ubap_assets.core.recommend.scorers import RecommenderModel, fit
from ubap_assets.core.recommend.texts import Catalogue

METHODS: tuple[str, ...] = (
    "random",
    "global_popularity",
    "segment_popularity",
    "content",
    "item_knn",
    "user_knn",
    "ease",
    "hybrid",
)
BASELINES = frozenset({"random", "global_popularity", "segment_popularity"})
SCHEMA: dict[str, pl.DataType] = {
    "method": pl.String,
    "is_baseline": pl.Boolean,
    "k": pl.Int32,
    "hr_at_k": pl.Float64,
    "ndcg_at_k": pl.Float64,
    "recall_at_k": pl.Float64,
    "map_at_k": pl.Float64,
    "coverage": pl.Float64,
    "novelty": pl.Float64,
    "users_evaluated": pl.Int64,
    "cutoff_ts": pl.Datetime("us"),
    "test_end_ts": pl.Datetime("us"),
    "note": pl.String,
}


@dataclass(frozen=True)
class Split:
    train_start: datetime
    cutoff: datetime
    test_end: datetime


def time_split(end: datetime, test_days: int, history_days: int) -> Split:
    """Cutoff T = end - test_days; train on [T - history_days, T); test on [T, end)."""
    if test_days < 1:
        raise RecommendationError(f"test_days must be at least 1 (got {test_days})")
    cutoff = end - timedelta(days=test_days)
    return Split(cutoff - timedelta(days=history_days), cutoff, end)


def scores_for(
    method: str,
    model: RecommenderModel,
    rows: sp.csr_matrix,
    segment: np.ndarray,
    self_index: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Dense (users, pages) scores of one method for a block of users (higher is better)."""
    if method == "random":
        return rng.random(rows.shape, dtype=np.float32)
    if method == "global_popularity":
        base = np.broadcast_to(model.popularity, rows.shape).astype(np.float32)
    elif method == "segment_popularity":
        base = model.popularity_for(segment)
    elif method == "content":
        base = model.content(rows)
    elif method == "item_knn":
        base = model.item_knn(rows)
    elif method == "user_knn":
        base = model.user_knn(rows, self_index)
    elif method == "ease":
        base = model.ease(rows)
    elif method == "hybrid":
        base, _ = model.hybrid(model.components(rows, segment, self_index))
    else:
        raise RecommendationError(f"unknown method {method!r}: use one of {METHODS}")
    # Ties (e.g. pages no neighbour reaches) are ordered by global popularity.
    return minmax_rows(base) + model.tie_break()


def ranking_metrics(top: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user HR, NDCG, recall and AP at k from ranked indices and a dense relevance block."""
    hits = np.take_along_axis(relevant, top, axis=1).astype(np.float64)
    n_relevant = relevant.sum(axis=1).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount[: hits.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discount)[np.clip(n_relevant.astype(int), 1, k) - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return {
        "hr": (hits.sum(axis=1) > 0).astype(np.float64),
        "ndcg": dcg / ideal,
        "recall": hits.sum(axis=1) / n_relevant,
        "ap": (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k),
    }


METRIC_COLUMNS = ("hr_at_k", "ndcg_at_k", "recall_at_k", "map_at_k", "coverage", "novelty")


def relevance_matrix(model: RecommenderModel, test_pairs: pl.DataFrame) -> sp.csr_matrix:
    """(train users, pages) 1 where a recommendable page, unseen in training, was engaged with."""
    catalogue = model.catalogue
    train = model.train
    test = test_pairs.join(train.user_rows(), on="user_id").join(
        row_index(catalogue.page_ids, "page_id", "page_index"), on="page_id"
    )
    relevant = sp.csr_matrix(
        (
            np.ones(test.height, dtype=np.float32),
            (test["train_index"].to_numpy(), test["page_index"].to_numpy()),
        ),
        shape=(train.n_users, catalogue.size),
    )
    relevant.data[:] = 1.0
    relevant = sp.csr_matrix(relevant - relevant.multiply(train.strength > 0))
    relevant = sp.csr_matrix(relevant.multiply(catalogue.recommendable[None, :].astype(np.float32)))
    relevant.eliminate_zeros()
    return relevant


def evaluate(
    model: RecommenderModel,
    test_pairs: pl.DataFrame,
    split: Split,
    methods: tuple[str, ...] = METHODS,
    note: str = "",
) -> pl.DataFrame:
    """One row per method: HR/NDCG/recall/MAP at k, coverage and novelty on the test users."""
    catalogue = model.catalogue
    train = model.train
    k = list_length(model)
    relevance = relevance_matrix(model, test_pairs)
    users = np.flatnonzero(np.diff(relevance.indptr) > 0)
    note = _join_notes(note, *model.notes)
    if not len(users):
        why = "no user with training history has a new page in the test window"
        return _result_frame(split, k, _join_notes(why, note), {}, 0)

    rng = np.random.default_rng(model.params.seed)
    self_information = -np.log2((model.user_counts + 1.0) / (train.n_users + 1.0))
    sums = {
        method: {"hr": 0.0, "ndcg": 0.0, "recall": 0.0, "ap": 0.0, "novelty": 0.0}
        for method in methods
    }
    shown = {method: np.zeros(catalogue.size, dtype=bool) for method in methods}
    for start in range(0, len(users), BLOCK_SIZE):
        block = users[start : start + BLOCK_SIZE]
        rows = train.strength[block]
        relevant = relevance[block].toarray() > 0
        segment = model.segments.of_train_user[block]
        excluded = (rows.toarray() > 0) | ~catalogue.recommendable[None, :]
        for method in methods:
            scores = scores_for(method, model, rows, segment, block, rng)
            scores[excluded] = -np.inf
            top = top_k(scores, k)
            for name, values in ranking_metrics(top, relevant, k).items():
                sums[method][name] += float(values.sum())
            sums[method]["novelty"] += float(self_information[top].mean(axis=1).sum())
            shown[method][np.unique(top)] = True
    n_users = len(users)
    metrics = {
        method: {
            "hr_at_k": sums[method]["hr"] / n_users,
            "ndcg_at_k": sums[method]["ndcg"] / n_users,
            "recall_at_k": sums[method]["recall"] / n_users,
            "map_at_k": sums[method]["ap"] / n_users,
            "coverage": shown[method].sum() / catalogue.n_recommendable,
            "novelty": sums[method]["novelty"] / n_users,
        }
        for method in methods
    }
    return _result_frame(split, k, note, metrics, n_users)


def _join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def _result_frame(
    split: Split,
    k: int,
    note: str,
    metrics: dict[str, dict[str, float]],
    users_evaluated: int,
) -> pl.DataFrame:
    """One row per method in ``metrics``; with none (no evaluable user), every method at zero."""
    zeros = dict.fromkeys(METRIC_COLUMNS, 0.0)
    rows = [
        {
            "method": method,
            "is_baseline": method in BASELINES,
            "k": k,
            **values,
            "users_evaluated": users_evaluated,
            "cutoff_ts": split.cutoff,
            "test_end_ts": split.test_end,
            "note": note,
        }
        for method, values in (metrics or dict.fromkeys(METHODS, zeros)).items()
    ]
    return pl.DataFrame(rows, schema=SCHEMA).with_columns(
        pl.col(column).round(5) for column in METRIC_COLUMNS
    )


def run_evaluation(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    segments: pl.DataFrame | None,
    test_days: int = 7,
    note: str = "",
) -> pl.DataFrame:
    """Split the ``events`` table at T = data end - test_days, fit on the past, score the future."""
    split = time_split(data_end(con), test_days, params.history_days)
    frame = load_interactions(con, split.train_start, split.cutoff, params)
    train = build_interactions(frame, catalogue)
    model = fit(catalogue, train, params, segments)
    test = engaged_pages(con, split.cutoff, split.test_end)
    if train.n_users == 0:
        why = "no events before the cutoff: nothing to train on"
        return _result_frame(split, params.k, why, {}, 0)
    return evaluate(model, test, split, note=note)
