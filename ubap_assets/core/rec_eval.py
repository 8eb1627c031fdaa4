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

from ubap_assets.core import recommend as rec

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
        raise rec.RecommendationError(f"test_days must be at least 1 (got {test_days})")
    cutoff = end - timedelta(days=test_days)
    return Split(cutoff - timedelta(days=history_days), cutoff, end)


def scores_for(
    method: str,
    model: rec.RecModel,
    rows: sp.csr_matrix,
    segment: np.ndarray,
    self_index: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Dense (users, pages) scores of one method for a block of users (higher is better)."""
    n, p = rows.shape
    if method == "random":
        return rng.random((n, p), dtype=np.float32)
    if method == "global_popularity":
        base = np.broadcast_to(model.popularity, (n, p)).astype(np.float32)
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
        raise rec.RecommendationError(f"unknown method {method!r}: use one of {METHODS}")
    # Ties (e.g. pages no neighbour reaches) are ordered by global popularity.
    return rec._minmax_rows(base) + model.tie_break()


def _metrics(top: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user HR, NDCG, recall and AP at k from ranked indices and a dense relevance block."""
    hits = np.take_along_axis(relevant, top, axis=1).astype(np.float64)
    n_rel = relevant.sum(axis=1).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount[: hits.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discount)[np.clip(n_rel.astype(int), 1, k) - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return {
        "hr": (hits.sum(axis=1) > 0).astype(np.float64),
        "ndcg": dcg / ideal,
        "recall": hits.sum(axis=1) / n_rel,
        "ap": (precision_at * hits).sum(axis=1) / np.minimum(n_rel, k),
    }


def evaluate(
    model: rec.RecModel,
    test_pairs: pl.DataFrame,
    split: Split,
    methods: tuple[str, ...] = METHODS,
    note: str = "",
) -> pl.DataFrame:
    """One row per method: HR/NDCG/recall/MAP at k, coverage and novelty on the test users."""
    cat = model.catalogue
    train = model.train
    k = min(model.params.k, int(cat.recommendable.sum()))
    # Relevant = recommendable pages engaged with in the test window and unseen in training.
    test = test_pairs.join(
        pl.DataFrame({"user_id": train.user_ids, "_u": np.arange(train.n_users)}), on="user_id"
    ).join(pl.DataFrame({"page_id": cat.page_ids, "_p": np.arange(cat.size)}), on="page_id")
    rel = sp.csr_matrix(
        (np.ones(test.height, dtype=np.float32), (test["_u"].to_numpy(), test["_p"].to_numpy())),
        shape=(train.n_users, cat.size),
    )
    rel.data[:] = 1.0
    rel = sp.csr_matrix(rel - rel.multiply(train.strength > 0))
    rel = sp.csr_matrix(rel.multiply(cat.recommendable[None, :].astype(np.float32)))
    rel.eliminate_zeros()
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    note = "; ".join(x for x in [note, *model.notes] if x)
    if not len(users):
        why = "no user with training history has a new page in the test window"
        return _empty_result(split, k, "; ".join(x for x in [why, note] if x))

    rng = np.random.default_rng(model.params.seed)
    counts = model.user_counts
    self_info = -np.log2((counts + 1.0) / (train.n_users + 1.0))
    sums = {m: {"hr": 0.0, "ndcg": 0.0, "recall": 0.0, "ap": 0.0, "novelty": 0.0} for m in methods}
    seen = {m: np.zeros(cat.size, dtype=bool) for m in methods}
    for start in range(0, len(users), rec._BLOCK):
        block = users[start : start + rec._BLOCK]
        rows = train.strength[block]
        relevant = rel[block].toarray() > 0
        segment = model.user_segment[block]
        excluded = (rows.toarray() > 0) | ~cat.recommendable[None, :]
        for method in methods:
            scores = scores_for(method, model, rows, segment, block, rng)
            scores[excluded] = -np.inf
            top = rec._top_k(scores, k)
            for name, values in _metrics(top, relevant, k).items():
                sums[method][name] += float(values.sum())
            sums[method]["novelty"] += float(self_info[top].mean(axis=1).sum())
            seen[method][np.unique(top)] = True
    n = len(users)
    n_candidates = int(cat.recommendable.sum())
    rows_out = [
        {
            "method": m,
            "is_baseline": m in BASELINES,
            "k": k,
            "hr_at_k": sums[m]["hr"] / n,
            "ndcg_at_k": sums[m]["ndcg"] / n,
            "recall_at_k": sums[m]["recall"] / n,
            "map_at_k": sums[m]["ap"] / n,
            "coverage": seen[m].sum() / n_candidates,
            "novelty": sums[m]["novelty"] / n,
            "users_evaluated": n,
            "cutoff_ts": split.cutoff,
            "test_end_ts": split.test_end,
            "note": note,
        }
        for m in methods
    ]
    return pl.DataFrame(rows_out, schema=SCHEMA).with_columns(
        pl.col(c).round(5)
        for c in ("hr_at_k", "ndcg_at_k", "recall_at_k", "map_at_k", "coverage", "novelty")
    )


def _empty_result(split: Split, k: int, note: str) -> pl.DataFrame:
    """No evaluable user: one row per method with zero metrics and the reason in ``note``."""
    return pl.DataFrame(
        [
            {
                "method": m,
                "is_baseline": m in BASELINES,
                "k": k,
                "hr_at_k": 0.0,
                "ndcg_at_k": 0.0,
                "recall_at_k": 0.0,
                "map_at_k": 0.0,
                "coverage": 0.0,
                "novelty": 0.0,
                "users_evaluated": 0,
                "cutoff_ts": split.cutoff,
                "test_end_ts": split.test_end,
                "note": note,
            }
            for m in METHODS
        ],
        schema=SCHEMA,
    )


def run_evaluation(
    con: duckdb.DuckDBPyConnection,
    catalogue: rec.Catalogue,
    params: rec.RecParams,
    segments: pl.DataFrame | None,
    test_days: int = 7,
    note: str = "",
) -> pl.DataFrame:
    """Split the ``events`` table at T = data end - test_days, fit on the past, score the future."""
    split = time_split(rec.data_end(con), test_days, params.history_days)
    frame = rec.load_interactions(con, split.train_start, split.cutoff, params)
    train = rec.build_interactions(frame, catalogue)
    model = rec.fit(catalogue, train, params, segments)
    test = rec.engaged_pages(con, split.cutoff, split.test_end)
    if train.n_users == 0:
        return _empty_result(split, params.k, "no events before the cutoff: nothing to train on")
    return evaluate(model, test, split, note=note)
