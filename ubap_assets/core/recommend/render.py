"""Top-k lists per user from a fitted model, each row with its source and a readable reason.

Vectorized over users: dense score blocks of a few thousand users at a time (a few blocks at
once, ``map_blocks``) and ``np.argpartition`` for the top k; no Python loop touches a (user,
page) pair. Strings are gathered inside polars from small lookup series, never built in numpy.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.params import COMPONENTS, SOURCES
from ubap_assets.core.recommend.ranking import BLOCK_SIZE, minmax_rows, top_k
from ubap_assets.core.recommend.scorers import RecommenderModel
from ubap_assets.lib.blocks import map_blocks

LISTS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "rank": pl.Int32,
    "page_id": pl.String,
    "title": pl.String,
    "score": pl.Float64,
    "source": pl.String,
    "top_signal": pl.String,
    "reason": pl.String,
}


def list_length(model: RecommenderModel) -> int:
    """k, or fewer when the catalogue has fewer candidate pages."""
    return min(model.params.k, model.catalogue.n_recommendable)


def recommendation_lists(
    model: RecommenderModel, user_ids: np.ndarray | list[str], generated_at: datetime
) -> pl.DataFrame:
    """Top-k recommendations for each requested user, with the source and reason of every row.

    Users with history (any event, however old) get the hybrid; users without (new, or an id
    never seen) get their segment's popularity, else global popularity. Both paths drop the pages
    ``model.excluded`` names (the policy the evaluation applies), so a user gets
    min(k, candidate pages) rows, fewer only when the policy leaves fewer pages.
    """
    user_ids = np.asarray(user_ids, dtype=str)
    k = list_length(model)
    lookup = (
        pl.DataFrame({"user_id": user_ids})
        .join(model.train.user_rows(), on="user_id", how="left", maintain_order="left")
        .join(model.segments.of_user, on="user_id", how="left", maintain_order="left")
    )
    train_rows = lookup["train_index"].fill_null(-1).to_numpy()
    segment = lookup["segment_index"].fill_null(-1).to_numpy().astype(np.int64)
    frames = map_blocks(
        lambda block: _block_lists(model, user_ids[block], train_rows[block], segment[block], k),
        [slice(start, start + BLOCK_SIZE) for start in range(0, len(user_ids), BLOCK_SIZE)],
    )
    lists = pl.concat(frames) if frames else pl.DataFrame(schema=LISTS_SCHEMA)
    return (
        lists.select(list(LISTS_SCHEMA))
        .cast(LISTS_SCHEMA)
        .with_columns(generated_at=pl.lit(generated_at, dtype=pl.Datetime("us")))
    )


def _block_lists(
    model: RecommenderModel,
    users: np.ndarray,
    train_rows: np.ndarray,
    segment: np.ndarray,
    k: int,
) -> pl.DataFrame:
    catalogue = model.catalogue
    n_users = len(users)
    known = train_rows >= 0
    if model.train.n_users:
        rows = model.train.strength[np.where(known, train_rows, 0)]
        rows = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)  # cold users: empty rows
    else:
        rows = sp.csr_matrix((n_users, catalogue.size), dtype=np.float32)
    parts = model.components(rows, segment, np.where(known, train_rows, -1))
    total, weighted = model.hybrid(parts)
    popularity_scaled = minmax_rows(parts["popularity"])
    score = np.where(known[:, None], total, popularity_scaled) + model.tie_break()
    score[model.excluded(train_rows)] = -np.inf
    score[:, ~catalogue.recommendable] = -np.inf
    top = top_k(score, k)
    top_score = np.take_along_axis(score, top, axis=1)
    served = np.isfinite(top_score)  # False: the policy left fewer than k pages

    # Which component contributed most, and which history page explains it.
    contributions = np.stack([np.take_along_axis(weighted[c], top, axis=1) for c in COMPONENTS])
    # Explain with history pages a person would recognise (not navigation pages like Home).
    recognisable = sp.csr_matrix(rows @ sp.diags(catalogue.recommendable.astype(np.float32)))
    history = recognisable.toarray()
    item_graph = model.item_graph
    content_anchor = history_anchors(recognisable, model.content_sim, top)
    item_anchor = history_anchors(recognisable, item_graph, top)
    has_content_anchor = np.take_along_axis(history @ model.content_sim, top, axis=1) > 0
    has_item_anchor = np.take_along_axis(history @ np.clip(item_graph, 0, None), top, axis=1) > 0

    in_segment = segment >= 0
    user_source = np.where(known, 0, np.where(in_segment, 1, 2))  # index into SOURCES
    source = np.repeat(user_source[:, None], k, axis=1).ravel()
    signal = np.where(
        known[:, None], np.argmax(contributions, axis=0), 3 + user_source[:, None]
    ).ravel()
    titles = pl.Series(catalogue.titles.tolist())
    segment_names = pl.Series(["", *model.segments.names.tolist()])
    lists = pl.DataFrame(
        {
            "user_id": pl.Series(users.tolist()).gather(np.repeat(np.arange(n_users), k)),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n_users),
            "page_id": pl.Series(catalogue.page_ids.tolist()).gather(top.ravel()),
            "title": titles.gather(top.ravel()),
            "score": np.where(served, top_score, 0.0).ravel().astype(np.float64),
            "served": served.ravel(),
            "source": pl.Series(list(SOURCES)).gather(source),
            "top_signal": pl.Series([*COMPONENTS, *SOURCES]).gather(signal),
            "content_anchor": titles.gather(content_anchor.ravel()),
            "item_anchor": titles.gather(item_anchor.ravel()),
            "has_content_anchor": has_content_anchor.ravel(),
            "has_item_anchor": has_item_anchor.ravel(),
            "segment_name": segment_names.gather(
                np.repeat(np.where(in_segment, segment + 1, 0), k)
            ),
            **{
                f"weighted_{name}": np.take_along_axis(weighted[name], top, axis=1).ravel()
                for name in COMPONENTS
            },
        }
    )
    return lists.filter("served").with_columns(
        score=pl.col("score").round(6),
        reason=reason(user_based=model.params.collaborative == "user_knn"),
    )


def history_anchors(history: sp.csr_matrix, similarity: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per (user, rank): the page j of the user's history with the largest
    ``history[u, j] * similarity[j, top[u, r]]``, the first in catalogue order on a tie (0 for a
    user without history). The caller names it only where that product is positive.

    Works on the history's nonzeros (a user has a few dozen), never on a dense
    (users, k, pages) cube."""
    n_users, k = top.shape
    anchors = np.zeros((n_users, k), dtype=np.int64)
    history = sp.csr_matrix(history)
    history.eliminate_zeros()
    history.sum_duplicates()  # canonical: each user's pages in catalogue order, once
    if not history.nnz:
        return anchors
    lengths = np.diff(history.indptr)
    owner = np.repeat(np.arange(n_users), lengths)
    products = history.data[:, None] * similarity[history.indices[:, None], top[owner]]
    has_history = lengths > 0
    starts = history.indptr[:-1][has_history]
    best = np.zeros((n_users, k), dtype=products.dtype)
    best[has_history] = np.maximum.reduceat(products, starts, axis=0)
    position = np.where(products == best[owner], np.arange(history.nnz)[:, None], history.nnz)
    anchors[has_history] = history.indices[np.minimum.reduceat(position, starts, axis=0)]
    return anchors


def reason(user_based: bool) -> pl.Expr:
    """The sentence that explains a row, from the columns ``_block_lists`` gathers."""
    segment = pl.col("segment_name")
    in_segment = pl.concat_str(pl.lit("popular in your segment '"), segment, pl.lit("'"))
    popular = pl.when(segment != "").then(in_segment).otherwise(pl.lit("popular across the site"))
    content = (
        pl.when(pl.col("has_content_anchor"))
        .then(
            pl.concat_str(
                pl.lit("similar to '"), pl.col("content_anchor"), pl.lit("' that you engaged with")
            )
        )
        .otherwise(popular)
    )
    collaborative = (
        pl.lit("engaged with by users whose history resembles yours")
        if user_based
        else pl.when(pl.col("has_item_anchor"))
        .then(
            pl.concat_str(
                pl.lit("people who engaged with '"),
                pl.col("item_anchor"),
                pl.lit("' also engaged with this"),
            )
        )
        .otherwise(popular)
    )
    weights = pl.concat_str(
        pl.lit(" (content "),
        pl.col("weighted_content").round(2).cast(pl.String),
        pl.lit(", collaborative "),
        pl.col("weighted_collaborative").round(2).cast(pl.String),
        pl.lit(", popularity "),
        pl.col("weighted_popularity").round(2).cast(pl.String),
        pl.lit(")"),
    )
    signal = pl.col("top_signal")
    # The top signal's sentence first, then the weights appended once (not once per branch).
    personal = (
        pl.when(signal == "content")
        .then(content)
        .when(signal == "collaborative")
        .then(collaborative)
        .otherwise(popular)
    )
    return (
        pl.when(pl.col("source") == "segment_popularity")
        .then(pl.concat_str(pl.lit("no history yet: "), in_segment))
        .when(pl.col("source") == "global_popularity")
        .then(pl.lit("no history yet: popular across the site"))
        .otherwise(pl.concat_str(personal, weights))
    )
