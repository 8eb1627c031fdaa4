"""Recommendations: content-based, collaborative (item-kNN, user-kNN) and a hybrid (Dagster-free).

Implicit feedback: every event on a page adds its event-type weight (view < add_to_cart <
purchase), decayed by age with a half-life; a user's preference for a page is log1p of that sum.
Everything is vectorized over users: sparse user x page matrices, dense score blocks of a few
thousand users at a time, ``np.argpartition`` for the top k. No Python loop touches (user, page).

Every scorer returns a dense ``(users, pages)`` float32 block where higher is better; the hybrid
min-max scales each component per user and mixes them with configurable weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "page_view": 1.0,
    "scroll": 0.5,
    "search": 0.5,
    "click": 1.5,
    "add_to_cart": 4.0,
    "checkout_start": 5.0,
    "purchase": 8.0,
}
# Navigation pages nobody needs recommending: never candidates (configurable).
DEFAULT_NON_RECOMMENDABLE: tuple[str, ...] = ("home", "search", "cart", "checkout")
SOURCES = ("hybrid", "segment_popularity", "global_popularity")
COMPONENTS = ("content", "collaborative", "popularity")
EXCLUDE_MODES = ("converted", "seen", "none")
COLLABORATIVE_METHODS = ("ease", "item_knn", "user_knn", "blend")
_BLOCK = 4096  # users scored at once
_REPEAT = -1e6  # score offset of excluded pages used only to fill a list up to k


class RecommendationError(ValueError):
    """Bad input to the recommender, with a message that names the fix."""


@dataclass(frozen=True)
class RecParams:
    """Knobs of the recommender (the Dagster configs mirror these fields)."""

    k: int = 10
    w_content: float = 0.1
    w_collaborative: float = 0.85
    w_popularity: float = 0.05
    collaborative: str = "ease"
    ease_lambda: float = 500.0
    content_neighbours: int = 20
    item_neighbours: int = 40
    user_neighbours: int = 50
    user_pool: int = 20_000
    half_life_days: float = 30.0
    history_days: int = 90
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    conversion_events: tuple[str, ...] = ("purchase",)
    exclude: str = "converted"
    non_recommendable_page_types: tuple[str, ...] = DEFAULT_NON_RECOMMENDABLE
    use_segments: bool = True
    seed: int = 0

    def validate(self) -> RecParams:
        if self.k < 1:
            raise RecommendationError(f"k must be at least 1 (got {self.k})")
        weights = (self.w_content, self.w_collaborative, self.w_popularity)
        if min(weights) < 0 or sum(weights) <= 0:
            raise RecommendationError(
                f"hybrid weights must be >= 0 with a positive sum (got content={self.w_content}, "
                f"collaborative={self.w_collaborative}, popularity={self.w_popularity})"
            )
        if self.exclude not in EXCLUDE_MODES:
            raise RecommendationError(
                f"exclude must be one of {EXCLUDE_MODES} (got {self.exclude!r})"
            )
        if self.collaborative not in COLLABORATIVE_METHODS:
            raise RecommendationError(
                f"collaborative must be one of {COLLABORATIVE_METHODS} (got {self.collaborative!r})"
            )
        if self.half_life_days <= 0 or self.history_days < 1:
            raise RecommendationError("half_life_days must be > 0 and history_days >= 1")
        if self.ease_lambda <= 0:
            raise RecommendationError(f"ease_lambda must be > 0 (got {self.ease_lambda})")
        if min(self.content_neighbours, self.item_neighbours, self.user_neighbours) < 1:
            raise RecommendationError("neighbour counts must be at least 1")
        return self


# --------------------------------------------------------------------------- catalogue & text


def page_texts(pages: pl.DataFrame) -> pl.DataFrame:
    """page_id, text (title. description. category), has_text — what gets embedded."""
    if pages.is_empty():
        raise RecommendationError("the pages table is empty: materialize 'pages' first")
    parts = [
        pl.col(c).cast(pl.String).fill_null("").str.strip_chars()
        for c in ("title", "description", "category")
    ]
    return pages.select(
        "page_id",
        pl.concat_list(parts)
        .list.eval(pl.element().filter(pl.element() != ""))
        .list.join(". ")
        .alias("text"),
    ).with_columns(has_text=pl.col("text").str.len_chars() > 0)


def embeddings_frame(texts: pl.DataFrame, vectors: np.ndarray, model: str) -> pl.DataFrame:
    """One row per page: the text, the model and the normalized vector as a FLOAT[] list."""
    if vectors.shape[0] != texts.height:
        raise RecommendationError(f"{vectors.shape[0]} vectors for {texts.height} pages")
    vectors = np.nan_to_num(vectors.astype(np.float32))
    return texts.with_columns(
        model=pl.lit(model),
        dim=pl.lit(vectors.shape[1], dtype=pl.Int32),
        embedding=pl.Series(vectors).cast(pl.List(pl.Float32)),
    )


def embedding_matrix(page_embeddings: pl.DataFrame, page_ids: np.ndarray) -> np.ndarray:
    """The (pages, dim) matrix in the order of ``page_ids``; pages without a vector get zeros."""
    if page_embeddings.is_empty():
        return np.zeros((len(page_ids), 1), dtype=np.float32)
    dim = len(page_embeddings["embedding"][0])
    ordered = pl.DataFrame({"page_id": page_ids}).join(
        page_embeddings.select("page_id", "embedding"),
        on="page_id",
        how="left",
        maintain_order="left",
    )
    filled = ordered["embedding"].fill_null(pl.lit([0.0] * dim, dtype=pl.List(pl.Float32)))
    return np.nan_to_num(np.asarray(filled.to_list(), dtype=np.float32)).reshape(len(page_ids), dim)


def similar_pages(page_embeddings: pl.DataFrame, pages: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """Top-k cosine neighbours per page (never itself; pages without text get no neighbours)."""
    schema = {
        "page_id": pl.String,
        "rank": pl.Int32,
        "similar_page_id": pl.String,
        "similarity": pl.Float64,
        "same_category": pl.Boolean,
        "similar_title": pl.String,
    }
    ids = page_embeddings["page_id"].to_numpy()
    n = len(ids)
    if n < 2:
        return pl.DataFrame(schema=schema)
    emb = embedding_matrix(page_embeddings, ids)
    valid = np.linalg.norm(emb, axis=1) > 0
    sims = emb @ emb.T
    sims[:, ~valid] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    kk = min(k, n - 1)
    top = _top_k(sims, kk)
    rows = np.repeat(np.arange(n), kk)
    cols = top.ravel()
    score = sims[rows, cols]
    keep = np.isfinite(score) & valid[rows]
    meta = pages.select("page_id", "title", "category")
    out = pl.DataFrame(
        {
            "page_id": ids[rows[keep]],
            "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), n)[keep],
            "similar_page_id": ids[cols[keep]],
            "similarity": score[keep].astype(np.float64).round(6),
        }
    )
    return (
        out.join(meta.select("page_id", pl.col("category").alias("_c")), on="page_id", how="left")
        .join(
            meta.rename(
                {"page_id": "similar_page_id", "title": "similar_title", "category": "_sc"}
            ),
            on="similar_page_id",
            how="left",
        )
        .with_columns(same_category=(pl.col("_c") == pl.col("_sc")).fill_null(False))
        .select(list(schema))
        .cast(schema)
        .sort("page_id", "rank")
    )


# --------------------------------------------------------------------------- interactions


def data_end(con: duckdb.DuckDBPyConnection) -> datetime:
    """Exclusive end of the data: midnight after the last day that has events."""
    last = con.execute("SELECT max(event_ts) FROM events").fetchone()[0]
    if last is None:
        raise RecommendationError("the events table is empty: materialize 'events' first")
    return datetime.combine(last.date(), datetime.min.time()) + timedelta(days=1)


def load_interactions(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    params: RecParams,
    decay_to: datetime | None = None,
) -> pl.DataFrame:
    """One row per (user, page) with events in [start, end): decayed weight, conversion flag.

    ``weight`` = sum over events of event-type weight x 0.5^(age_days / half_life), age measured
    to ``decay_to`` (default ``end``). Reads the ``events`` table through ``con``.
    """
    case = " ".join("WHEN ? THEN ?" for _ in params.event_weights)
    case_params: list = [v for kv in params.event_weights.items() for v in kv]
    sql = f"""
        SELECT user_id, page_id,
               sum(w * pow(0.5, greatest(date_diff('second', event_ts, ?::TIMESTAMP), 0)
                   / 86400.0 / ?))::DOUBLE AS weight,
               count(*)::BIGINT AS n_events,
               bool_or(list_contains(?::VARCHAR[], event_type)) AS converted
        FROM (SELECT user_id, page_id, event_ts, event_type,
                     CASE event_type {case} ELSE 0.0 END AS w
              FROM events
              WHERE event_ts >= ? AND event_ts < ?
                AND user_id IS NOT NULL AND page_id IS NOT NULL)
        WHERE w > 0
        GROUP BY user_id, page_id
    """
    args = [
        decay_to or end,
        params.half_life_days,
        list(params.conversion_events),
        *case_params,
        start,
        end,
    ]
    return con.execute(sql, args).pl()


def engaged_pages(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """Distinct (user_id, page_id) with any event in [start, end) (the evaluation's test set)."""
    return con.execute(
        "SELECT DISTINCT user_id, page_id FROM events WHERE event_ts >= ? AND event_ts < ? "
        "AND user_id IS NOT NULL AND page_id IS NOT NULL",
        [start, end],
    ).pl()


def load_segments(con: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame | None, str]:
    """user_segments(user_id, segment_id, segment_name) if the table exists, else (None, why)."""
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = 'user_segments'"
        ).fetchall()
    }
    if not cols:
        return None, "user_segments does not exist yet: segment popularity falls back to global"
    if not {"user_id", "segment_id"} <= cols:
        return None, "user_segments lacks user_id/segment_id: segment popularity = global"
    name = "segment_name" if "segment_name" in cols else "segment_id"
    frame = con.execute(
        f"SELECT user_id, CAST(segment_id AS VARCHAR) AS segment_id, "
        f"CAST({name} AS VARCHAR) AS segment_name FROM main.user_segments"
    ).pl()
    if frame.is_empty():
        return None, "user_segments is empty: segment popularity falls back to global"
    return frame, f"segments from user_segments ({frame['segment_id'].n_unique()} segments)"


@dataclass(frozen=True)
class Catalogue:
    page_ids: np.ndarray
    titles: np.ndarray
    recommendable: np.ndarray  # bool per page
    embeddings: np.ndarray  # (pages, dim), rows unit length or zero
    note: str = ""

    @property
    def size(self) -> int:
        return len(self.page_ids)


def build_catalogue(
    pages: pl.DataFrame, page_embeddings: pl.DataFrame | None, params: RecParams
) -> Catalogue:
    """Page order, titles, which pages may be recommended, and their embeddings."""
    if pages.is_empty():
        raise RecommendationError("the pages table is empty: materialize 'pages' first")
    pages = pages.unique("page_id", keep="first", maintain_order=True)
    ids = pages["page_id"].to_numpy().astype(str)
    titles = pages["title"].fill_null("").to_numpy().astype(str)
    titles = np.where(titles == "", ids, titles)
    types = pages["page_type"].fill_null("other").to_numpy().astype(str)
    recommendable = ~np.isin(types, list(params.non_recommendable_page_types))
    note = ""
    if not recommendable.any():
        recommendable[:] = True
        note = "no page outside the non-recommendable types: every page is a candidate"
    emb = (
        embedding_matrix(page_embeddings, ids)
        if page_embeddings is not None
        else np.zeros((len(ids), 1), dtype=np.float32)
    )
    return Catalogue(ids, titles, recommendable, emb, note)


@dataclass(frozen=True)
class Interactions:
    user_ids: np.ndarray  # row labels
    strength: sp.csr_matrix  # (users, pages) log1p(decayed weight), float32
    converted: sp.csr_matrix  # (users, pages) 1 where the user converted
    n_rows: int  # (user, page) pairs behind the matrix

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def build_interactions(frame: pl.DataFrame, catalogue: Catalogue) -> Interactions:
    """Sparse matrices from ``load_interactions`` rows; pages outside the catalogue are dropped."""
    page_index = pl.DataFrame(
        {"page_id": catalogue.page_ids, "_p": np.arange(catalogue.size, dtype=np.int64)}
    )
    rows = frame.join(page_index, on="page_id", how="inner")
    users = rows["user_id"].unique().sort()
    user_index = pl.DataFrame({"user_id": users, "_u": np.arange(len(users), dtype=np.int64)})
    rows = rows.join(user_index, on="user_id", how="inner")
    u = rows["_u"].to_numpy()
    p = rows["_p"].to_numpy()
    shape = (len(users), catalogue.size)
    w = np.log1p(rows["weight"].fill_null(0.0).fill_nan(0.0).clip(0.0).to_numpy()).astype(
        np.float32
    )
    strength = sp.csr_matrix((w, (u, p)), shape=shape, dtype=np.float32)
    conv = rows["converted"].fill_null(False).to_numpy().astype(np.float32)
    converted = sp.csr_matrix((conv, (u, p)), shape=shape, dtype=np.float32)
    converted.eliminate_zeros()
    return Interactions(users.to_numpy().astype(str), strength, converted, rows.height)


# --------------------------------------------------------------------------- the model


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _prune(sim: np.ndarray, n: int) -> np.ndarray:
    """Keep each column's n largest positive entries (a kNN graph), zero the diagonal."""
    sim = np.clip(sim.astype(np.float32), 0.0, None)
    np.fill_diagonal(sim, 0.0)
    if n < sim.shape[0]:
        keep = _top_k(sim.T, n)  # per target page, its n nearest source pages
        mask = np.zeros_like(sim, dtype=bool)
        mask[keep, np.arange(sim.shape[1])[:, None]] = True
        sim = np.where(mask, sim, 0.0).astype(np.float32)
    return sim


def _minmax_rows(block: np.ndarray) -> np.ndarray:
    lo = block.min(axis=1, keepdims=True)
    span = block.max(axis=1, keepdims=True) - lo
    return np.divide(block - lo, span, out=np.zeros_like(block), where=span > 0)


@dataclass
class RecModel:
    """Everything fitted from the training interactions; scores any block of users."""

    catalogue: Catalogue
    train: Interactions
    params: RecParams
    content_sim: np.ndarray  # (pages, pages) pruned cosine of embeddings
    item_sim: np.ndarray  # (pages, pages) pruned cosine of interaction columns
    ease_weights: np.ndarray  # (pages, pages) EASE item-item regression weights, zero diagonal
    popularity: np.ndarray  # (pages,) decayed preference mass
    user_counts: np.ndarray  # (pages,) distinct users (novelty)
    segment_ids: np.ndarray  # segment labels (index = segment number)
    segment_names: np.ndarray
    segment_pop: np.ndarray  # (segments, pages)
    user_segment: np.ndarray  # (train users,) segment number or -1
    segment_of: pl.DataFrame  # user_id, _s (segment number), for users outside train too
    notes: list[str]
    _pool: np.ndarray | None = None  # train indices of the user-kNN neighbour pool
    _user_norm_t: np.ndarray | None = None  # (pages, pool) dense, unit-length user columns
    _pool_strength: sp.csr_matrix | None = None  # (pool, pages)

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
        neighbour. Neighbours come from a seeded pool of at most ``user_pool`` users.
        """
        pool = self._pool
        if pool is None or not len(pool):
            return np.zeros((rows.shape[0], self.catalogue.size), dtype=np.float32)
        sims = np.asarray(_row_normalize(rows) @ self._user_norm_t, dtype=np.float32)
        if self_index is not None:
            pos = np.clip(np.searchsorted(pool, self_index), 0, len(pool) - 1)
            hit = np.flatnonzero((pool[pos] == self_index) & (self_index >= 0))
            sims[hit, pos[hit]] = 0.0
        n = min(self.params.user_neighbours, sims.shape[1])
        idx = (
            np.argpartition(-sims, n - 1, axis=1)[:, :n]
            if n < sims.shape[1]
            else np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        )
        vals = np.take_along_axis(sims, idx, axis=1)
        graph = sp.csr_matrix(
            (vals.ravel(), (np.repeat(np.arange(len(idx)), idx.shape[1]), idx.ravel())),
            shape=sims.shape,
        )
        return np.asarray((graph @ self._pool_strength).todense(), dtype=np.float32)

    def collaborative(self, rows: sp.csr_matrix, self_index: np.ndarray | None) -> np.ndarray:
        how = self.params.collaborative
        if how == "ease":
            return self.ease(rows)
        if how == "item_knn":
            return self.item_knn(rows)
        if how == "user_knn":
            return self.user_knn(rows, self_index)
        return (
            _minmax_rows(self.ease(rows))
            + _minmax_rows(self.item_knn(rows))
            + _minmax_rows(self.user_knn(rows, self_index))
        )

    def popularity_for(self, segment: np.ndarray) -> np.ndarray:
        """Per-user popularity: the user's segment's where known, else global."""
        glob = np.broadcast_to(self.popularity, (len(segment), self.catalogue.size))
        if not len(self.segment_pop):
            return np.array(glob, dtype=np.float32)
        seg = self.segment_pop[np.clip(segment, 0, None)]
        return np.where((segment >= 0)[:, None], seg, glob).astype(np.float32)

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
        p = self.params
        weights = {
            "content": p.w_content,
            "collaborative": p.w_collaborative,
            "popularity": p.w_popularity,
        }
        weighted = {name: weights[name] * _minmax_rows(parts[name]) for name in COMPONENTS}
        total = weighted["content"] + weighted["collaborative"] + weighted["popularity"]
        return total, weighted

    def tie_break(self) -> np.ndarray:
        """A tiny global-popularity term that orders otherwise tied pages."""
        pop = self.popularity
        span = pop.max() - pop.min()
        return (1e-6 * (pop - pop.min()) / span if span > 0 else np.zeros_like(pop)).astype(
            np.float32
        )


def _row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ m)


def _ease(strength: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE weights B = -P / diag(P) with P = (X'X + lam I)^-1 and a zero diagonal."""
    gram = np.asarray((strength.T @ strength).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lam
    inv = np.linalg.inv(gram)
    weights = -inv / np.diag(inv)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def fit(
    catalogue: Catalogue,
    train: Interactions,
    params: RecParams,
    segments: pl.DataFrame | None = None,
) -> RecModel:
    """Fit similarity graphs and popularity from the training interactions."""
    params.validate()
    notes: list[str] = [catalogue.note] if catalogue.note else []
    n = catalogue.size
    emb = catalogue.embeddings
    content = _prune(emb @ emb.T, params.content_neighbours) if n > 1 else np.zeros((n, n))
    if not np.abs(emb).sum():
        notes.append("no page embeddings: the content component is zero")
    cols = _row_normalize(sp.csr_matrix(train.strength.T))
    item = (
        _prune(np.asarray((cols @ cols.T).todense()), params.item_neighbours)
        if n > 1
        else np.zeros((n, n))
    )
    ease = _ease(train.strength, params.ease_lambda)
    popularity = np.asarray(train.strength.sum(axis=0)).ravel().astype(np.float32)
    counts = np.diff(sp.csc_matrix(train.strength).indptr).astype(np.float64)
    if train.n_users == 0:
        notes.append("no training interactions: every user gets popularity (which is flat)")

    seg_ids = np.array([], dtype=str)
    seg_names = np.array([], dtype=str)
    seg_pop = np.zeros((0, n), dtype=np.float32)
    user_segment = np.full(train.n_users, -1, dtype=np.int64)
    segment_of = pl.DataFrame(schema={"user_id": pl.String, "_s": pl.Int64})
    if segments is not None and params.use_segments and not segments.is_empty():
        labels = segments.unique("user_id", keep="first").select(
            pl.col("user_id").cast(pl.String),
            pl.col("segment_id").cast(pl.String),
            pl.col("segment_name").cast(pl.String).fill_null(pl.col("segment_id").cast(pl.String)),
        )
        names = labels.unique("segment_id", keep="first").sort("segment_id")
        seg_ids = names["segment_id"].to_numpy().astype(str)
        seg_names = names["segment_name"].to_numpy().astype(str)
        code = {s: i for i, s in enumerate(seg_ids)}
        labels = labels.with_columns(
            _s=pl.col("segment_id").replace_strict(code, return_dtype=pl.Int64)
        )
        segment_of = labels.select("user_id", "_s")
        joined = pl.DataFrame({"user_id": train.user_ids}).join(
            labels.select("user_id", "_s"), on="user_id", how="left", maintain_order="left"
        )
        user_segment = joined["_s"].fill_null(-1).to_numpy().astype(np.int64)
        member = user_segment >= 0
        onehot = sp.csr_matrix(
            (
                np.ones(member.sum(), dtype=np.float32),
                (user_segment[member], np.flatnonzero(member)),
            ),
            shape=(len(seg_ids), train.n_users),
        )
        seg_pop = np.asarray((onehot @ train.strength).todense(), dtype=np.float32)
        # Shrink small segments toward global popularity by one average user's worth of mass.
        glob_share = popularity / max(popularity.sum(), 1e-9)
        prior = popularity.sum() / max(train.n_users, 1)
        mass = seg_pop.sum(axis=1, keepdims=True)
        seg_pop = ((seg_pop + prior * glob_share) / (mass + prior + 1e-9)).astype(np.float32)
    elif params.use_segments:
        notes.append("no segments: segment popularity = global popularity")

    model = RecModel(
        catalogue,
        train,
        params,
        content.astype(np.float32),
        item.astype(np.float32),
        ease,
        popularity,
        counts,
        seg_ids,
        seg_names,
        seg_pop,
        user_segment,
        segment_of,
        notes,
    )
    # user-kNN compares against a seeded sample of at most user_pool users (bounded cost).
    rng = np.random.default_rng(params.seed)
    size = min(params.user_pool, train.n_users)
    pool = (
        np.sort(rng.choice(train.n_users, size=size, replace=False))
        if size
        else np.zeros(0, dtype=np.int64)
    )
    model._pool = pool
    model._pool_strength = train.strength[pool]
    model._user_norm_t = np.ascontiguousarray(
        _row_normalize(model._pool_strength).toarray().T, dtype=np.float32
    )
    return model


# --------------------------------------------------------------------------- recommending


def _exclusion(model: RecModel, rows_idx: np.ndarray) -> np.ndarray:
    """Dense bool (users, pages): what this user must not be shown (per ``params.exclude``)."""
    n = len(rows_idx)
    out = np.zeros((n, model.catalogue.size), dtype=bool)
    known = rows_idx >= 0
    if model.params.exclude == "none" or not known.any():
        return out
    source = model.train.converted if model.params.exclude == "converted" else model.train.strength
    out[known] = source[rows_idx[known]].toarray() > 0
    return out


def recommend(
    model: RecModel, user_ids: np.ndarray | list[str], generated_at: datetime
) -> pl.DataFrame:
    """Top-k recommendations for each requested user, with the source and reason of every row.

    Users with history get the hybrid; users without (new, or an id never seen) get their
    segment's popularity, else global popularity. Every user gets min(k, candidate pages) rows:
    if exclusions leave fewer than k pages, excluded pages fill up the list as ``repeat``.
    """
    user_ids = np.asarray(user_ids, dtype=str)
    cat = model.catalogue
    k = min(model.params.k, int(cat.recommendable.sum()))
    lookup = (
        pl.DataFrame({"user_id": user_ids})
        .join(
            pl.DataFrame(
                {
                    "user_id": model.train.user_ids,
                    "_i": np.arange(model.train.n_users, dtype=np.int64),
                }
            ),
            on="user_id",
            how="left",
            maintain_order="left",
        )
        .join(model.segment_of, on="user_id", how="left", maintain_order="left")
    )
    train_idx = lookup["_i"].fill_null(-1).to_numpy()
    segment = lookup["_s"].fill_null(-1).to_numpy().astype(np.int64)
    frames = [
        _recommend_block(
            model, user_ids[s : s + _BLOCK], train_idx[s : s + _BLOCK], segment[s : s + _BLOCK], k
        )
        for s in range(0, len(user_ids), _BLOCK)
    ]
    schema = {
        "user_id": pl.String,
        "rank": pl.Int32,
        "page_id": pl.String,
        "title": pl.String,
        "score": pl.Float64,
        "source": pl.String,
        "top_signal": pl.String,
        "reason": pl.String,
    }
    out = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return (
        out.select(list(schema))
        .cast(schema)
        .with_columns(generated_at=pl.lit(generated_at, dtype=pl.Datetime("us")))
    )


def _recommend_block(
    model: RecModel, users: np.ndarray, idx: np.ndarray, segment: np.ndarray, k: int
) -> pl.DataFrame:
    cat = model.catalogue
    n = len(users)
    known = idx >= 0
    if model.train.n_users:
        rows = model.train.strength[np.where(known, idx, 0)]
        rows = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)  # cold users: empty rows
    else:
        rows = sp.csr_matrix((n, cat.size), dtype=np.float32)
    parts = model.components(rows, segment, np.where(known, idx, -1))
    total, weighted = model.hybrid(parts)
    pop_scaled = _minmax_rows(parts["popularity"])
    score = np.where(known[:, None], total, pop_scaled) + model.tie_break()
    excluded = _exclusion(model, idx)
    score = np.where(excluded, _REPEAT + pop_scaled, score)
    score[:, ~cat.recommendable] = -np.inf
    top = _top_k(score, k)
    top_score = np.take_along_axis(score, top, axis=1)
    repeat = top_score < _REPEAT / 2

    # Which component contributed most, and which history page explains it.
    stack = np.stack([np.take_along_axis(weighted[c], top, axis=1) for c in COMPONENTS])
    # Explain with history pages a person would recognise (not navigation pages like Home).
    dense = rows.toarray() * cat.recommendable[None, :]
    anchor_c = np.argmax(dense[:, None, :] * model.content_sim.T[top], axis=2)
    item_graph = model.ease_weights if model.params.collaborative == "ease" else model.item_sim
    anchor_i = np.argmax(dense[:, None, :] * item_graph.T[top], axis=2)
    has_c = np.take_along_axis(dense @ model.content_sim, top, axis=1) > 0
    has_i = np.take_along_axis(dense @ np.clip(item_graph, 0, None), top, axis=1) > 0

    # Strings are gathered inside polars from small lookup series (fast), never built in numpy.
    seg_known = segment >= 0
    user_src = np.where(known, 0, np.where(seg_known, 1, 2))  # index into SOURCES
    src = np.where(repeat, 3, np.repeat(user_src[:, None], k, axis=1)).ravel()
    sig = np.where(known[:, None], np.argmax(stack, axis=0), 3 + user_src[:, None]).ravel()
    names = pl.Series(list(SOURCES) + ["repeat"])
    signals = pl.Series(list(COMPONENTS) + list(SOURCES))
    pages = pl.Series(cat.page_ids.tolist())
    titles = pl.Series(cat.titles.tolist())
    seg_names = pl.Series([""] + model.segment_names.tolist())
    frame = pl.DataFrame(
        {
            "user_id": pl.Series(users.tolist()).gather(np.repeat(np.arange(n), k)),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "page_id": pages.gather(top.ravel()),
            "title": titles.gather(top.ravel()),
            "score": np.where(repeat, 0.0, top_score).ravel().astype(np.float64),
            "source": names.gather(src),
            "top_signal": signals.gather(sig),
            "anchor_content": titles.gather(anchor_c.ravel()),
            "anchor_item": titles.gather(anchor_i.ravel()),
            "has_c": has_c.ravel(),
            "has_i": has_i.ravel(),
            "segment_name": seg_names.gather(np.repeat(np.where(seg_known, segment + 1, 0), k)),
            "w_c": np.take_along_axis(weighted["content"], top, axis=1).ravel(),
            "w_i": np.take_along_axis(weighted["collaborative"], top, axis=1).ravel(),
            "w_p": np.take_along_axis(weighted["popularity"], top, axis=1).ravel(),
        }
    )
    return frame.with_columns(score=pl.col("score").round(6), reason=_reason(model))


def _reason(model: RecModel) -> pl.Expr:
    user_based = model.params.collaborative == "user_knn"
    seg = pl.col("segment_name")
    in_segment = pl.concat_str(pl.lit("popular in your segment '"), seg, pl.lit("'"))
    popular = pl.when(seg != "").then(in_segment).otherwise(pl.lit("popular across the site"))
    content = (
        pl.when(pl.col("has_c"))
        .then(
            pl.concat_str(
                pl.lit("similar to '"), pl.col("anchor_content"), pl.lit("' that you engaged with")
            )
        )
        .otherwise(popular)
    )
    collab = (
        pl.lit("engaged with by users whose history resembles yours")
        if user_based
        else pl.when(pl.col("has_i"))
        .then(
            pl.concat_str(
                pl.lit("people who engaged with '"),
                pl.col("anchor_item"),
                pl.lit("' also engaged with this"),
            )
        )
        .otherwise(popular)
    )
    parts = pl.concat_str(
        pl.lit(" (content "),
        pl.col("w_c").round(2).cast(pl.String),
        pl.lit(", collaborative "),
        pl.col("w_i").round(2).cast(pl.String),
        pl.lit(", popularity "),
        pl.col("w_p").round(2).cast(pl.String),
        pl.lit(")"),
    )
    sig = pl.col("top_signal")
    return (
        pl.when(pl.col("source") == "repeat")
        .then(pl.lit("already converted on; shown again because fewer than k other pages remain"))
        .when(pl.col("source") == "segment_popularity")
        .then(pl.concat_str(pl.lit("no history yet: "), in_segment))
        .when(pl.col("source") == "global_popularity")
        .then(pl.lit("no history yet: popular across the site"))
        .when(sig == "content")
        .then(pl.concat_str(content, parts))
        .when(sig == "collaborative")
        .then(pl.concat_str(collab, parts))
        .otherwise(pl.concat_str(popular, parts))
    )
