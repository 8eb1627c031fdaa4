"""The fitted model and its scorers: popularity, content, item-kNN, user-kNN, EASE and the hybrid.

Every scorer returns a dense ``(users, pages)`` float32 block where higher is better; the hybrid
min-max scales each component per user and mixes them with configurable weights. ``fit`` builds
the model complete in one go; it is frozen afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.interactions import Interactions
from ubap_assets.core.recommend.params import COMPONENTS, RecommenderParams
from ubap_assets.core.recommend.ranking import minmax_rows, top_k
from ubap_assets.core.recommend.texts import Catalogue
from ubap_assets.lib.blocks import map_blocks

# Rows user-kNN scores at once (see RecommenderModel.user_knn).
USER_KNN_ROWS = 256


def row_normalize(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to unit length (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inverse.astype(np.float32)) @ matrix)


# nearest_columns first looks at every SAMPLE_STRIDE-th column of a row.
SAMPLE_STRIDE = 8


def nearest_columns(similarity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's n largest non-negative values: (columns, values), both (rows, n); equal
    values are taken in no promised order (as ``np.argpartition``).

    The n-th largest of every SAMPLE_STRIDE-th column bounds the row's n-th largest from below,
    so only the values at or above it (a few times n, not the whole row) are partitioned. A
    row whose bound is 0 keeps only its positive values and pads with zero weights, which add
    nothing to a weighted sum. A row with many equal values near its bound (short histories
    alike) takes a plain ``argpartition`` of the whole row, and so does a block where most rows
    are like that. The values must not be negative (cosines of non-negative rows).
    """
    rows = similarity.shape[0]
    sample = similarity[:, ::SAMPLE_STRIDE]
    width = sample.shape[1]
    if n >= width:
        return _partition_columns(similarity, n)
    # (the n-th smallest of the negated sample: partitioning near the top of a row with many
    # zeros is several times slower than near the bottom)
    bound = -np.partition(-sample, n - 1, axis=1)[:, n - 1]
    # positive values only: a bound of 0 keeps the row's positive values
    bound = np.maximum(bound, np.finfo(similarity.dtype).smallest_subnormal)[:, None]
    plain = (sample >= bound).sum(axis=1) > 2 * n
    if plain.mean() > 0.5:
        return _partition_columns(similarity, n)
    keep = similarity >= bound
    keep[plain] = False
    counts = keep.sum(axis=1)
    kept = max(int(counts.max()), n)
    row, column = np.nonzero(keep)  # row by row, so each row's slots count up from 0
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    packed = np.zeros((rows, kept), dtype=similarity.dtype)
    packed[row, slot] = similarity[row, column]
    packed_columns = np.zeros((rows, kept), dtype=np.intp)
    packed_columns[row, slot] = column
    top = np.argpartition(packed, kept - n, axis=1)[:, kept - n :]
    columns = np.take_along_axis(packed_columns, top, axis=1)
    values = np.take_along_axis(packed, top, axis=1)
    if plain.any():
        columns[plain], values[plain] = _partition_columns(similarity[plain], n)
    return columns, values


def _partition_columns(similarity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n >= similarity.shape[1]:
        columns = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    else:
        columns = np.argpartition(-similarity, n - 1, axis=1)[:, :n]
    return columns, np.take_along_axis(similarity, columns, axis=1)


def prune_to_neighbours(similarity: np.ndarray, n: int) -> np.ndarray:
    """Keep each column's n largest positive entries (a kNN graph), zero the diagonal."""
    similarity = np.clip(similarity.astype(np.float32), 0.0, None)
    np.fill_diagonal(similarity, 0.0)
    if n < similarity.shape[0]:
        keep = top_k(similarity.T, n)  # per target page, its n nearest source pages
        mask = np.zeros_like(similarity, dtype=bool)
        mask[keep, np.arange(similarity.shape[1])[:, None]] = True
        similarity = np.where(mask, similarity, 0.0).astype(np.float32)
    return similarity


def item_gram(strength: sp.csr_matrix) -> np.ndarray:
    """X'X of the interactions as stored, dense (pages x pages): what EASE inverts. The product
    of float32 interactions is float32, so it is kept as such (no bit is lost)."""
    return np.asarray((strength.T @ strength).todense())


def ease_weights(
    strength: sp.csr_matrix,
    regularization: float,
    dtype: type = np.float32,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """EASE weights B = I - P / diag(P) with P = (X'X + lambda I)^-1: -P_ij / P_jj off the
    diagonal, a zero diagonal (Steck 2019). Fitted on ``strength`` as stored: on binary
    interactions without decay this is textbook EASE. Solved in float64, returned as ``dtype``
    (the model stores float32 to halve the memory of a pages x pages matrix). ``gram``: X'X
    already computed (``item_gram``), so other lambdas do not multiply the interactions again."""
    gram = np.array(item_gram(strength) if gram is None else gram, dtype=np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(dtype)


@dataclass(frozen=True)
class SegmentPopularity:
    """Popularity per user segment, shrunk toward global; empty when there are no segments."""

    ids: np.ndarray  # segment labels (index = segment number)
    names: np.ndarray
    popularity: np.ndarray  # (segments, pages)
    of_train_user: np.ndarray  # (train users,) segment number or -1
    of_user: pl.DataFrame  # user_id, segment_index: for users outside train too

    @classmethod
    def none(cls, n_pages: int, n_train_users: int) -> SegmentPopularity:
        return cls(
            np.array([], dtype=str),
            np.array([], dtype=str),
            np.zeros((0, n_pages), dtype=np.float32),
            np.full(n_train_users, -1, dtype=np.int64),
            pl.DataFrame(schema={"user_id": pl.String, "segment_index": pl.Int64}),
        )


def fit_segment_popularity(
    segments: pl.DataFrame, train: Interactions, popularity: np.ndarray
) -> SegmentPopularity:
    """Each segment's decayed preference mass over pages, from its training members."""
    labels = segments.unique("user_id", keep="first").select(
        pl.col("user_id").cast(pl.String),
        pl.col("segment_id").cast(pl.String),
        pl.col("segment_name").cast(pl.String).fill_null(pl.col("segment_id").cast(pl.String)),
    )
    names = labels.unique("segment_id", keep="first").sort("segment_id")
    segment_ids = names["segment_id"].to_numpy().astype(str)
    number_of = {segment: number for number, segment in enumerate(segment_ids)}
    of_user = labels.select(
        "user_id",
        segment_index=pl.col("segment_id").replace_strict(number_of, return_dtype=pl.Int64),
    )
    joined = pl.DataFrame({"user_id": train.user_ids}).join(
        of_user, on="user_id", how="left", maintain_order="left"
    )
    of_train_user = joined["segment_index"].fill_null(-1).to_numpy().astype(np.int64)
    member = of_train_user >= 0
    membership = sp.csr_matrix(
        (
            np.ones(member.sum(), dtype=np.float32),
            (of_train_user[member], np.flatnonzero(member)),
        ),
        shape=(len(segment_ids), train.n_users),
    )
    mass_by_segment = np.asarray((membership @ train.strength).todense(), dtype=np.float32)
    # Shrink small segments toward global popularity by one average user's worth of mass.
    global_share = popularity / max(popularity.sum(), 1e-9)
    prior = popularity.sum() / max(train.n_users, 1)
    mass = mass_by_segment.sum(axis=1, keepdims=True)
    shrunk = (mass_by_segment + prior * global_share) / (mass + prior + 1e-9)
    return SegmentPopularity(
        segment_ids,
        names["segment_name"].to_numpy().astype(str),
        shrunk.astype(np.float32),
        of_train_user,
        of_user,
    )


@dataclass(frozen=True)
class UserPool:
    """A seeded sample of at most ``user_pool`` train users that user-kNN compares against."""

    indices: np.ndarray  # sorted train indices
    strength: sp.csr_matrix  # (pool, pages)
    unit_columns: np.ndarray  # (pages, pool) dense, unit-length user columns

    @classmethod
    def sample(cls, train: Interactions, size: int, seed: int) -> UserPool:
        size = min(size, train.n_users)
        rng = np.random.default_rng(seed)
        indices = (
            np.sort(rng.choice(train.n_users, size=size, replace=False))
            if size
            else np.zeros(0, dtype=np.int64)
        )
        strength = train.strength[indices]
        unit_columns = np.ascontiguousarray(row_normalize(strength).toarray().T, dtype=np.float32)
        return cls(indices, strength, unit_columns)


@dataclass(frozen=True)
class RecommenderModel:
    """Everything fitted from the training interactions; scores any block of users."""

    catalogue: Catalogue
    train: Interactions
    params: RecommenderParams
    content_sim: np.ndarray  # (pages, pages) pruned cosine of embeddings
    item_sim: np.ndarray  # (pages, pages) pruned cosine of interaction columns
    ease_weights: np.ndarray  # (pages, pages) EASE item-item regression weights, zero diagonal
    gram: np.ndarray  # (pages, pages) X'X: EASE under another lambda starts from it
    popularity: np.ndarray  # (pages,) decayed preference mass
    user_counts: np.ndarray  # (pages,) distinct users (novelty)
    segments: SegmentPopularity
    user_pool: UserPool
    notes: tuple[str, ...]

    @property
    def item_graph(self) -> np.ndarray:
        """The item-item weights behind the collaborative component's explanations."""
        return self.ease_weights if self.params.collaborative == "ease" else self.item_sim

    def with_params(self, params: RecommenderParams) -> RecommenderModel:
        """The same fit under other serving knobs (weights, collaborative method, exclusion, k);
        EASE is refitted when lambda changes. Decay and strength need a new ``fit``."""
        params.validate()
        model = replace(self, params=params)
        if params.ease_lambda != self.params.ease_lambda:
            model = replace(
                model,
                ease_weights=ease_weights(self.train.strength, params.ease_lambda, gram=self.gram),
            )
        return model

    def excluded(self, train_rows: np.ndarray) -> np.ndarray:
        """Dense bool (users, pages): pages never shown to each user, per ``params.exclude`` —
        everything they engaged with ("engaged") or only what they converted on ("converted").
        ``train_rows``: each user's row in the training matrices, -1 for a user without history.
        The one exclusion policy: served lists and the evaluation both call this."""
        mask = np.zeros((len(train_rows), self.catalogue.size), dtype=bool)
        known = train_rows >= 0
        if not known.any():
            return mask
        mask[known] = self.exclusion_matrix()[train_rows[known]].toarray() > 0
        return mask

    def exclusion_matrix(self) -> sp.csr_matrix:
        """(train users, pages) nonzero where ``params.exclude`` hides the page from the user."""
        return self.train.hidden(self.params.exclude)

    # ---- component scorers: each returns a dense float32 (len(rows), pages) block
    def content(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.content_sim, dtype=np.float32)

    def item_knn(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray(rows @ self.item_sim, dtype=np.float32)

    def ease(self, rows: sp.csr_matrix) -> np.ndarray:
        """EASE (Steck 2019): a closed-form linear item-item model learned from all users."""
        return np.asarray(rows @ self.ease_weights, dtype=np.float32)

    def user_knn(self, rows: sp.csr_matrix, self_index: np.ndarray | None = None) -> np.ndarray:
        """Sum of the n most similar users' preferences, weighted by cosine similarity.

        ``self_index``: each row's own train index (or -1), so a user is never their own
        neighbour. Neighbours come from a seeded pool of at most ``user_pool`` users. Rows are
        scored USER_KNN_ROWS at a time, a few blocks at once (``map_blocks``): a (rows, pool)
        similarity block and its argpartition stay tens of MB (a whole 4096-user block against a
        20k pool took over 1 GB).
        """
        pool = self.user_pool.indices
        if not len(pool):
            return np.zeros((rows.shape[0], self.catalogue.size), dtype=np.float32)
        out = np.empty((rows.shape[0], self.catalogue.size), dtype=np.float32)

        def score(part: slice) -> None:  # each block writes its own rows of ``out``
            own = self_index[part] if self_index is not None else None
            out[part] = self._user_knn_rows(rows[part], own)

        map_blocks(score, [slice(s, s + USER_KNN_ROWS) for s in range(0, len(out), USER_KNN_ROWS)])
        return out

    def _user_knn_rows(self, rows: sp.csr_matrix, self_index: np.ndarray | None) -> np.ndarray:
        pool = self.user_pool.indices
        similarity = np.asarray(row_normalize(rows) @ self.user_pool.unit_columns, dtype=np.float32)
        if self_index is not None:
            position = np.clip(np.searchsorted(pool, self_index), 0, len(pool) - 1)
            is_self = np.flatnonzero((pool[position] == self_index) & (self_index >= 0))
            similarity[is_self, position[is_self]] = 0.0
        n = min(self.params.user_neighbours, similarity.shape[1])
        neighbours, values = nearest_columns(similarity, n)
        graph = sp.csr_matrix(
            (
                values.ravel(),
                (np.repeat(np.arange(len(neighbours)), neighbours.shape[1]), neighbours.ravel()),
            ),
            shape=similarity.shape,
        )
        return np.asarray((graph @ self.user_pool.strength).todense(), dtype=np.float32)

    def collaborative(self, rows: sp.csr_matrix, self_index: np.ndarray | None) -> np.ndarray:
        method = self.params.collaborative
        if method == "ease":
            return self.ease(rows)
        if method == "item_knn":
            return self.item_knn(rows)
        if method == "user_knn":
            return self.user_knn(rows, self_index)
        return (
            minmax_rows(self.ease(rows))
            + minmax_rows(self.item_knn(rows))
            + minmax_rows(self.user_knn(rows, self_index))
        )

    def popularity_for(self, segment: np.ndarray) -> np.ndarray:
        """Per-user popularity: the user's segment's where known, else global."""
        global_rows = np.broadcast_to(self.popularity, (len(segment), self.catalogue.size))
        if not len(self.segments.popularity):
            return np.array(global_rows, dtype=np.float32)
        segment_rows = self.segments.popularity[np.clip(segment, 0, None)]
        return np.where((segment >= 0)[:, None], segment_rows, global_rows).astype(np.float32)

    def components(
        self, rows: sp.csr_matrix, segment: np.ndarray, self_index: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        return {
            "content": self.content(rows),
            "collaborative": self.collaborative(rows, self_index),
            "popularity": self.popularity_for(segment),
        }

    def hybrid(self, parts: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted sum of per-user min-max scaled components, and each weighted part."""
        weights = self.params.component_weights
        weighted = {name: weights[name] * minmax_rows(parts[name]) for name in COMPONENTS}
        total = weighted["content"] + weighted["collaborative"] + weighted["popularity"]
        return total, weighted

    def tie_break(self) -> np.ndarray:
        """A tiny global-popularity term that orders otherwise tied pages."""
        popularity = self.popularity
        span = popularity.max() - popularity.min()
        scaled = (
            1e-6 * (popularity - popularity.min()) / span if span > 0 else np.zeros_like(popularity)
        )
        return scaled.astype(np.float32)


@dataclass(frozen=True)
class ItemGraph:
    """The pages x pages side of a fit: what scoring a user's history multiplies by."""

    content_sim: np.ndarray  # pruned cosine of the page embeddings
    item_sim: np.ndarray  # pruned cosine of the interaction columns
    gram: np.ndarray  # X'X of the interactions
    ease_weights: np.ndarray  # EASE weights under params.ease_lambda

    ARRAYS = ("content_sim", "item_sim", "gram", "ease_weights")


def fit_item_graph(
    catalogue: Catalogue, train: Interactions, params: RecommenderParams
) -> ItemGraph:
    """Content and item similarities, X'X and EASE weights of ``train``'s interactions."""
    n_pages = catalogue.size
    vectors = catalogue.embeddings
    content = (
        prune_to_neighbours(vectors @ vectors.T, params.content_neighbours)
        if n_pages > 1
        else np.zeros((n_pages, n_pages))
    )
    page_columns = row_normalize(sp.csr_matrix(train.strength.T))
    item = (
        prune_to_neighbours(
            np.asarray((page_columns @ page_columns.T).todense()), params.item_neighbours
        )
        if n_pages > 1
        else np.zeros((n_pages, n_pages))
    )
    gram = item_gram(train.strength)
    return ItemGraph(
        content_sim=content.astype(np.float32),
        item_sim=item.astype(np.float32),
        gram=gram,
        ease_weights=ease_weights(train.strength, params.ease_lambda, gram=gram),
    )


def fit(
    catalogue: Catalogue,
    train: Interactions,
    params: RecommenderParams,
    segments: pl.DataFrame | None = None,
    graph: ItemGraph | None = None,
) -> RecommenderModel:
    """Fit similarity graphs and popularity from the training interactions. ``graph``: the
    pages x pages side fitted before (``fit_item_graph`` on other interactions, the served
    model's weekly graph); the users' side and popularity always come from ``train``."""
    params.validate()
    notes: list[str] = [catalogue.note] if catalogue.note else []
    n_pages = catalogue.size
    if not np.abs(catalogue.embeddings).sum():
        notes.append("no page embeddings: the content component is zero")
    graph = graph if graph is not None else fit_item_graph(catalogue, train, params)
    popularity = np.asarray(train.strength.sum(axis=0)).ravel().astype(np.float32)
    if train.n_users == 0:
        notes.append("no training interactions: every user gets popularity (which is flat)")

    if segments is not None and params.use_segments and not segments.is_empty():
        segment_popularity = fit_segment_popularity(segments, train, popularity)
    else:
        segment_popularity = SegmentPopularity.none(n_pages, train.n_users)
        if params.use_segments:
            notes.append("no segments: segment popularity = global popularity")

    return RecommenderModel(
        catalogue=catalogue,
        train=train,
        params=params,
        content_sim=graph.content_sim,
        item_sim=graph.item_sim,
        ease_weights=graph.ease_weights,
        gram=graph.gram,
        popularity=popularity,
        user_counts=np.diff(sp.csc_matrix(train.strength).indptr).astype(np.float64),
        segments=segment_popularity,
        user_pool=UserPool.sample(train, params.user_pool, params.seed),
        notes=tuple(notes),
    )
