"""The pages side: text to embed, stored vectors, similar pages, the candidate catalogue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from ubap_assets.core.recommend.params import RecommendationError, RecommenderParams
from ubap_assets.core.recommend.ranking import top_k

SIMILAR_PAGES_SCHEMA: dict[str, pl.DataType] = {
    "page_id": pl.String,
    "rank": pl.Int32,
    "similar_page_id": pl.String,
    "similarity": pl.Float64,
    "same_category": pl.Boolean,
    "similar_title": pl.String,
}


def page_texts(pages: pl.DataFrame) -> pl.DataFrame:
    """page_id, text (title. description. category), has_text — what gets embedded."""
    if pages.is_empty():
        raise RecommendationError("the pages table is empty: materialize 'pages' first")
    parts = [
        pl.col(column).cast(pl.String).fill_null("").str.strip_chars()
        for column in ("title", "description", "category")
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


@dataclass(frozen=True)
class EmbeddingRefresh:
    """``page_embeddings`` brought up to date: the frame and how each page's vector was got."""

    frame: pl.DataFrame
    embedded_pages: int  # new pages, changed texts, or every page under a new model
    reused_pages: int  # stored vectors kept: same page, same text, same model


def stored_embeddings_to_reuse(
    texts: pl.DataFrame, stored: pl.DataFrame | None, model: str
) -> pl.DataFrame:
    """``texts`` with the stored ``embedding`` of each page whose text and model are unchanged
    (null where the page must be embedded again)."""
    needed = {"page_id", "text", "model", "embedding"}
    if stored is None or stored.is_empty() or not needed <= set(stored.columns):
        return texts.with_columns(embedding=pl.lit(None, dtype=pl.List(pl.Float32)))
    current = (
        stored.filter(pl.col("model") == model)
        .select(
            "page_id", stored_text="text", embedding=pl.col("embedding").cast(pl.List(pl.Float32))
        )
        .unique("page_id", keep="none")  # an ambiguous stored page is embedded again
    )
    return (
        texts.join(current, on="page_id", how="left", maintain_order="left")
        .with_columns(
            embedding=pl.when(pl.col("stored_text") == pl.col("text")).then(pl.col("embedding"))
        )
        .drop("stored_text")
    )


def refresh_embeddings(
    texts: pl.DataFrame,
    stored: pl.DataFrame | None,
    model: str,
    embed: Callable[[list[str]], np.ndarray],
) -> EmbeddingRefresh:
    """The ``page_embeddings`` frame for ``texts``: stored vectors where page, text and model are
    unchanged, ``embed`` (called only when something changed) for the rest.

    The result is the frame embedding every page would give: a page's vector depends only on
    its text and the model (up to the model's float rounding between batches, ~1e-7).
    """
    candidates = stored_embeddings_to_reuse(texts, stored, model)
    missing = candidates["embedding"].is_null().to_numpy()
    kept = candidates.filter(~pl.col("embedding").is_null())["embedding"]
    dims = kept.list.len().unique()
    if len(dims) > 1:  # a stored table of mixed sizes cannot be trusted: start over
        missing[:] = True
    if not missing.any():
        vectors = np.asarray(kept.to_list(), dtype=np.float32).reshape(texts.height, int(dims[0]))
        return EmbeddingRefresh(embeddings_frame(texts, vectors, model), 0, texts.height)
    fresh = embed(candidates.filter(pl.Series(missing))["text"].to_list())
    if missing.all() or fresh.shape[1] != int(dims[0]):
        vectors = fresh if missing.all() else embed(texts["text"].to_list())
        return EmbeddingRefresh(embeddings_frame(texts, vectors, model), texts.height, 0)
    vectors = np.zeros((texts.height, fresh.shape[1]), dtype=np.float32)
    vectors[missing] = fresh
    vectors[~missing] = np.asarray(kept.to_list(), dtype=np.float32)
    reused = int((~missing).sum())
    return EmbeddingRefresh(embeddings_frame(texts, vectors, model), int(missing.sum()), reused)


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
    page_ids = page_embeddings["page_id"].to_numpy()
    n_pages = len(page_ids)
    if n_pages < 2:
        return pl.DataFrame(schema=SIMILAR_PAGES_SCHEMA)
    vectors = embedding_matrix(page_embeddings, page_ids)
    has_vector = np.linalg.norm(vectors, axis=1) > 0
    similarity = vectors @ vectors.T
    similarity[:, ~has_vector] = -np.inf
    np.fill_diagonal(similarity, -np.inf)
    neighbours = min(k, n_pages - 1)
    top = top_k(similarity, neighbours)
    rows = np.repeat(np.arange(n_pages), neighbours)
    columns = top.ravel()
    score = similarity[rows, columns]
    keep = np.isfinite(score) & has_vector[rows]
    meta = pages.select("page_id", "title", "category")
    pairs = pl.DataFrame(
        {
            "page_id": page_ids[rows[keep]],
            "rank": np.tile(np.arange(1, neighbours + 1, dtype=np.int32), n_pages)[keep],
            "similar_page_id": page_ids[columns[keep]],
            "similarity": score[keep].astype(np.float64).round(6),
        }
    )
    return (
        pairs.join(
            meta.select("page_id", pl.col("category").alias("page_category")),
            on="page_id",
            how="left",
        )
        .join(
            meta.rename(
                {
                    "page_id": "similar_page_id",
                    "title": "similar_title",
                    "category": "similar_category",
                }
            ),
            on="similar_page_id",
            how="left",
        )
        .with_columns(
            same_category=(pl.col("page_category") == pl.col("similar_category")).fill_null(False)
        )
        .select(list(SIMILAR_PAGES_SCHEMA))
        .cast(SIMILAR_PAGES_SCHEMA)
        .sort("page_id", "rank")
    )


@dataclass(frozen=True)
class Catalogue:
    """The candidate pages in one fixed order: every matrix column follows ``page_ids``."""

    page_ids: np.ndarray
    titles: np.ndarray
    recommendable: np.ndarray  # bool per page
    embeddings: np.ndarray  # (pages, dim), rows unit length or zero
    note: str = ""

    @property
    def size(self) -> int:
        return len(self.page_ids)

    @property
    def n_recommendable(self) -> int:
        return int(self.recommendable.sum())


def build_catalogue(
    pages: pl.DataFrame, page_embeddings: pl.DataFrame | None, params: RecommenderParams
) -> Catalogue:
    """Page order, titles, which pages may be recommended, and their embeddings."""
    if pages.is_empty():
        raise RecommendationError("the pages table is empty: materialize 'pages' first")
    pages = pages.unique("page_id", keep="first", maintain_order=True)
    page_ids = pages["page_id"].to_numpy().astype(str)
    titles = pages["title"].fill_null("").to_numpy().astype(str)
    titles = np.where(titles == "", page_ids, titles)
    page_types = pages["page_type"].fill_null("other").to_numpy().astype(str)
    recommendable = ~np.isin(page_types, list(params.non_recommendable_page_types))
    note = ""
    if not recommendable.any():
        recommendable[:] = True
        note = "no page outside the non-recommendable types: every page is a candidate"
    vectors = (
        embedding_matrix(page_embeddings, page_ids)
        if page_embeddings is not None
        else np.zeros((len(page_ids), 1), dtype=np.float32)
    )
    return Catalogue(page_ids, titles, recommendable, vectors, note)
