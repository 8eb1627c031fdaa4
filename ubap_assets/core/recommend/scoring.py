"""Scoring one window: each method's top-k for every evaluable user, per-user metrics, bootstrap.

A user is evaluable in a window when they have training history and engaged with at least one
candidate page in the window that the exclusion policy (``RecommenderModel.excluded``, the one
the served lists apply) does not hide from them. Rankings drop the same pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.interactions import Interactions, row_index
from ubap_assets.core.recommend.params import COMPONENTS, METHODS, RecommendationError
from ubap_assets.core.recommend.ranking import BLOCK_SIZE, minmax_rows, top_k
from ubap_assets.core.recommend.scorers import RecommenderModel
from ubap_assets.core.recommend.texts import Catalogue

PER_USER = ("hr", "ndcg", "recall", "ap", "novelty")
Weights = tuple[float, float, float]  # content, collaborative, popularity
BOOTSTRAP_DRAWS = 2_000_000


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
        "recall": hits.sum(axis=1) / np.maximum(n_relevant, 1.0),
        "ap": (precision_at * hits).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1.0),
    }


def relevance_matrix(model: RecommenderModel, test_pairs: pl.DataFrame) -> sp.csr_matrix:
    """(train users, pages) 1 where a candidate page engaged with in the window is not hidden
    from the user by the exclusion policy."""
    return window_relevance(model.train, model.catalogue, model.params.exclude, test_pairs)


def window_relevance(
    train: Interactions, catalogue: Catalogue, exclude: str, test_pairs: pl.DataFrame
) -> sp.csr_matrix:
    """``relevance_matrix`` before any fit: from the training interactions and the policy."""
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
    relevant = sp.csr_matrix(relevant - relevant.multiply(train.hidden(exclude) > 0))
    relevant = sp.csr_matrix(relevant.multiply(catalogue.recommendable[None, :].astype(np.float32)))
    relevant.eliminate_zeros()
    return relevant


def evaluable_users(train: Interactions, relevance: sp.csr_matrix) -> np.ndarray:
    """Ids of the users a window can evaluate: training history and a relevant page in the
    window's ``window_relevance`` (no fit needed)."""
    return train.user_ids[np.diff(relevance.indptr) > 0]


class Block:
    """One block of evaluable users with their component scores, each computed once."""

    def __init__(self, model: RecommenderModel, users: np.ndarray, rng: np.random.Generator):
        self.model = model
        self.users = users
        self.rows = model.train.strength[users]
        self.segment = model.segments.of_train_user[users]
        self.rng = rng

    @cached_property
    def content(self) -> np.ndarray:
        return self.model.content(self.rows)

    @cached_property
    def item_knn(self) -> np.ndarray:
        return self.model.item_knn(self.rows)

    @cached_property
    def user_knn(self) -> np.ndarray:
        return self.model.user_knn(self.rows, self.users)

    @cached_property
    def ease(self) -> np.ndarray:
        return self.model.ease(self.rows)

    @cached_property
    def segment_popularity(self) -> np.ndarray:
        return self.model.popularity_for(self.segment)

    @cached_property
    def global_popularity(self) -> np.ndarray:
        return np.broadcast_to(self.model.popularity, self.rows.shape).astype(np.float32)

    @cached_property
    def scaled_components(self) -> dict[str, np.ndarray]:
        """The hybrid's components, each min-max scaled per user (as ``model.hybrid`` does)."""
        method = self.model.params.collaborative
        collaborative = (
            minmax_rows(self.ease) + minmax_rows(self.item_knn) + minmax_rows(self.user_knn)
            if method == "blend"
            else getattr(self, method)
        )
        return {
            "content": minmax_rows(self.content),
            "collaborative": minmax_rows(collaborative),
            "popularity": minmax_rows(self.segment_popularity),
        }

    def scores(self, method: str, weights: Weights | None = None) -> np.ndarray:
        """Dense (users, pages) scores of one method (higher is better), ties by popularity."""
        if method == "random":
            return self.rng.random(self.rows.shape, dtype=np.float32)
        if method == "hybrid":
            weights = weights or tuple(self.model.params.component_weights.values())
            parts = self.scaled_components
            base = sum(w * parts[name] for w, name in zip(weights, COMPONENTS, strict=True))
        elif method in METHODS:
            base = getattr(self, method)
        else:
            raise RecommendationError(f"unknown method {method!r}: use one of {METHODS}")
        return minmax_rows(base) + self.model.tie_break()


@dataclass(frozen=True)
class WindowScores:
    """Per-user metrics of each scored variant on one window, users in train-index order."""

    users: np.ndarray  # train indices of the scored users (the evaluable ones, or a sample)
    per_user: dict[str, dict[str, np.ndarray]]  # variant -> metric -> (users,)
    coverage: dict[str, float]  # variant -> share of candidate pages shown to anyone
    evaluable: int = 0  # evaluable users in the window, sampled or not

    @property
    def n_users(self) -> int:
        return len(self.users)

    def mean(self, variant: str, metric: str = "ndcg") -> float:
        values = self.per_user[variant][metric]
        return float(values.mean()) if len(values) else 0.0


def score_window(
    model: RecommenderModel,
    test_pairs: pl.DataFrame,
    variants: dict[str, tuple[str, Weights | None]],
    k: int,
    seed: int = 0,
    only: np.ndarray | None = None,
    relevance: sp.csr_matrix | None = None,
) -> WindowScores:
    """Score every variant (label -> (method, hybrid weights)) on the window's evaluable users,
    or on those of them whose id is in ``only`` (a sample). ``relevance``: the window's
    ``relevance_matrix``, when already built for the same training users and policy."""
    catalogue = model.catalogue
    if relevance is None:
        relevance = relevance_matrix(model, test_pairs)
    elif relevance.shape != (model.train.n_users, catalogue.size):
        raise RecommendationError(
            f"relevance of shape {relevance.shape} does not fit this model's "
            f"{model.train.n_users} training users x {catalogue.size} pages"
        )
    users = np.flatnonzero(np.diff(relevance.indptr) > 0)
    evaluable = len(users)
    if only is not None:
        users = users[np.isin(model.train.user_ids[users], only)]
    per_user = {v: {m: np.zeros(len(users)) for m in PER_USER} for v in variants}
    shown = {v: np.zeros(catalogue.size, dtype=bool) for v in variants}
    self_information = -np.log2((model.user_counts + 1.0) / (model.train.n_users + 1.0))
    rng = np.random.default_rng(seed)
    for start in range(0, len(users), BLOCK_SIZE):
        block = Block(model, users[start : start + BLOCK_SIZE], rng)
        relevant = relevance[block.users].toarray() > 0
        hidden = model.excluded(block.users) | ~catalogue.recommendable[None, :]
        for label, (method, weights) in variants.items():
            scores = block.scores(method, weights)
            scores[hidden] = -np.inf
            top = top_k(scores, k)
            listed = np.isfinite(np.take_along_axis(scores, top, axis=1))
            window = slice(start, start + len(block.users))
            for name, values in ranking_metrics(top, relevant, k).items():
                per_user[label][name][window] = values
            per_user[label]["novelty"][window] = (self_information[top] * listed).sum(
                axis=1
            ) / np.maximum(listed.sum(axis=1), 1)
            shown[label][top[listed]] = True
    coverage = {
        label: float((shown[label] & catalogue.recommendable).sum() / catalogue.n_recommendable)
        for label in variants
    }
    return WindowScores(users, per_user, coverage, evaluable)


def bootstrap_intervals(
    series: dict[str, np.ndarray], n_resamples: int, seed: int, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile interval of the mean of each per-user series, users resampled with replacement.

    All series are resampled with the same draws (paired), so a difference of two methods is
    judged on the same users. Seeded: the same input gives the same interval.
    """
    names = list(series)
    matrix = np.column_stack([series[name] for name in names]).astype(np.float64)
    n_users = matrix.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, len(names)))
    # About 2M draws at a time (16 MB): the same stream of draws whatever the chunk.
    chunk = max(1, min(n_resamples, BOOTSTRAP_DRAWS // max(n_users, 1)))
    for start in range(0, n_resamples, chunk):
        draws = rng.integers(0, n_users, size=(min(chunk, n_resamples - start), n_users))
        counts = np.empty((len(draws), n_users), dtype=np.float64)
        for row, drawn in enumerate(draws):
            counts[row] = np.bincount(drawn, minlength=n_users)
        del draws
        means[start : start + len(counts)] = counts @ matrix / n_users
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return {name: (float(low[i]), float(high[i])) for i, name in enumerate(names)}
