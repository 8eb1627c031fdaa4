"""Asset checks of the recommendation tables."""

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.warehouse import tables


@dg.asset_check(asset=tables.REC_EVALUATION, blocking=True)  # WARN: orders, never blocks
def hybrid_beats_popularity(rec_evaluation: pl.DataFrame) -> dg.AssetCheckResult:
    """Warn when the hybrid's NDCG@10 is not above global popularity's on the same split."""
    ndcg = dict(
        zip(rec_evaluation["method"].to_list(), rec_evaluation["ndcg_at_k"].to_list(), strict=False)
    )
    users = int(rec_evaluation["users_evaluated"].max() or 0)
    hybrid, popularity = ndcg.get("hybrid"), ndcg.get("global_popularity")
    if hybrid is None or popularity is None or users == 0:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="no evaluable users or methods: " + str(rec_evaluation["note"][0]),
        )
    return dg.AssetCheckResult(
        passed=bool(hybrid > popularity),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "hybrid_ndcg_at_10": hybrid,
            "global_popularity_ndcg_at_10": popularity,
            "users_evaluated": users,
        },
        description=f"hybrid NDCG@10 {hybrid:.4f} vs global popularity {popularity:.4f}",
    )


@dg.asset_check(asset=tables.USER_RECOMMENDATIONS, blocking=True)
def every_user_gets_k(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """Every user has the same number of ranked rows (k, or the catalogue size), each explained."""
    with warehouse.get_connection() as con:
        row = con.execute(f"""
            WITH per AS (SELECT user_id, count(*) AS n, count(DISTINCT page_id) AS d
                         FROM main.{tables.USER_RECOMMENDATIONS} GROUP BY user_id)
            SELECT count(*), min(n), max(n), count(*) FILTER (WHERE n <> d),
                   (SELECT count(*) FROM main.{tables.USER_RECOMMENDATIONS}
                    WHERE reason IS NULL OR reason = '' OR source IS NULL OR isnan(score)),
                   (SELECT count(*) FROM main.{tables.USERS} u WHERE NOT EXISTS (
                       SELECT 1 FROM per WHERE per.user_id = u.user_id))
            FROM per""").fetchone()
    users, lo, hi, dupes, unexplained, missing = (int(v or 0) for v in row)
    passed = users > 0 and lo == hi and dupes == 0 and unexplained == 0 and missing == 0
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "users": users,
            "min_rows": lo,
            "max_rows": hi,
            "users_with_duplicates": dupes,
            "rows_without_reason": unexplained,
            "users_without_list": missing,
        },
    )


@dg.asset_check(asset=tables.SIMILAR_PAGES, blocking=True)
def no_self_neighbours(similar_pages: pl.DataFrame) -> dg.AssetCheckResult:
    """A page is never its own neighbour and similarities are cosines in [-1, 1]."""
    selfs = similar_pages.filter(pl.col("page_id") == pl.col("similar_page_id")).height
    bad = similar_pages.filter(~pl.col("similarity").is_between(-1.0001, 1.0001)).height
    return dg.AssetCheckResult(
        passed=selfs == 0 and bad == 0, metadata={"self_neighbours": selfs, "out_of_range": bad}
    )


@dg.asset_check(asset=tables.PAGE_EMBEDDINGS, blocking=True)
def embeddings_unit_length(page_embeddings: pl.DataFrame) -> dg.AssetCheckResult:
    """Embeddings are unit length (zero only for pages without text) and free of NaN."""
    if page_embeddings.is_empty():
        return dg.AssetCheckResult(passed=False, description="no embeddings")
    dim = len(page_embeddings["embedding"][0])
    vectors = np.asarray(page_embeddings["embedding"].to_list(), dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(vectors, axis=1)
    has_text = page_embeddings["has_text"].to_numpy()
    bad = int((has_text & (np.abs(norms - 1) > 1e-3)).sum() + (~has_text & (norms > 0)).sum())
    nan = int(np.isnan(vectors).any(axis=1).sum())
    return dg.AssetCheckResult(
        passed=bad == 0 and nan == 0, metadata={"bad_norms": bad, "rows_with_nan": nan, "dim": dim}
    )
