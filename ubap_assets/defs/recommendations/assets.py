"""Recommendations: page embeddings, similar pages, per-user hybrid lists, evaluation, insights."""

import time
from datetime import timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import insights, rec_eval
from ubap_assets.core import recommend as rec
from ubap_assets.defs.recommendations.config import (
    EvaluationConfig,
    InsightsConfig,
    RecommendationsConfig,
    SimilarPagesConfig,
)
from ubap_assets.lib.embedder import Embedder
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.warehouse import tables

GROUP = "recommendations"
OWNERS = ["team:analytics"]


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), metadata={"fix": "see the message"})


@dg.asset(
    name=tables.PAGE_EMBEDDINGS,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "duckdb"},
)
def page_embeddings(
    context: dg.AssetExecutionContext, embedder: Embedder, pages: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """One row per page: the L2-normalized embedding of its title, description and category."""
    try:
        texts = rec.page_texts(pages)
    except rec.RecommendationError as exc:
        raise _fail(exc) from exc
    started = time.perf_counter()
    vectors = embedder.embed(texts["text"].to_list())
    frame = rec.embeddings_frame(texts, vectors, embedder.model_id())
    empty = frame.filter(~pl.col("has_text"))
    if empty.height:
        context.log.warning(f"{empty.height} pages have no text: zero vectors ({empty['page_id']})")
    return dg.Output(
        frame,
        metadata={
            "model": embedder.model_id(),
            "dim": int(vectors.shape[1]),
            "pages": frame.height,
            "pages_without_text": empty.height,
            "embed_seconds": round(time.perf_counter() - started, 2),
        },
    )


@dg.asset(
    name=tables.SIMILAR_PAGES,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"numpy", "duckdb"},
)
def similar_pages(
    config: SimilarPagesConfig, page_embeddings: pl.DataFrame, pages: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """One row per (page, neighbour): the k most similar other pages by cosine similarity."""
    frame = rec.similar_pages(page_embeddings, pages, config.k)
    note = "" if frame.height else "fewer than two pages with text: no neighbours"
    meta = {
        "pages": frame["page_id"].n_unique() if frame.height else 0,
        "mean_top1_similarity": round(
            float(frame.filter(pl.col("rank") == 1)["similarity"].mean() or 0.0), 4
        ),
        "same_category_share": round(float(frame["same_category"].mean() or 0.0), 4),
        "preview": markdown_preview(frame),
    }
    if note:
        meta["note"] = note
    return dg.Output(frame, metadata=meta)


def _segments(con, params: rec.RecParams) -> tuple[pl.DataFrame | None, str]:
    if not params.use_segments:
        return None, "segments disabled by config"
    return rec.load_segments(con)


@dg.asset(
    name=tables.USER_RECOMMENDATIONS,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scipy", "duckdb"},
    deps=[tables.EVENTS, tables.USER_SEGMENTS],
)
def user_recommendations(
    context: dg.AssetExecutionContext,
    config: RecommendationsConfig,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
    users: pl.DataFrame,
    page_embeddings: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per (user, rank): the hybrid's top-k pages for a user, with source and reason."""
    params = config.params()
    started = time.perf_counter()
    try:
        with warehouse.get_connection() as con:
            end = rec.data_end(con)
            frame = rec.load_interactions(
                con, end - timedelta(days=params.history_days), end, params
            )
            segments, seg_note = _segments(con, params)
        catalogue = rec.build_catalogue(pages, page_embeddings, params)
        model = rec.fit(catalogue, rec.build_interactions(frame, catalogue), params, segments)
        user_ids = pl.concat(
            [
                users.select(pl.col("user_id").cast(pl.String)),
                pl.DataFrame({"user_id": model.train.user_ids}),
            ]
        ).unique()
        recs = rec.recommend(model, user_ids["user_id"].sort().to_numpy(), end)
    except rec.RecommendationError as exc:
        raise _fail(exc) from exc
    for note in model.notes:
        context.log.info(note)
    by_source = recs.group_by("source").agg(pl.col("user_id").n_unique()).sort("source")
    return dg.Output(
        recs,
        metadata={
            "users": recs["user_id"].n_unique(),
            "rows": recs.height,
            "users_with_history": model.train.n_users,
            "users_by_source": dg.MetadataValue.json(dict(by_source.iter_rows())),
            "catalogue_coverage": round(
                float(recs["page_id"].n_unique() / catalogue.recommendable.sum()), 4
            ),
            "weights": dg.MetadataValue.json(
                {
                    "content": params.w_content,
                    "collaborative": params.w_collaborative,
                    "popularity": params.w_popularity,
                }
            ),
            "segments": seg_note,
            "notes": "; ".join(model.notes) or "none",
            "seconds": round(time.perf_counter() - started, 2),
            "preview": markdown_preview(
                recs.select("user_id", "rank", "title", "source", "reason")
            ),
        },
    )


@dg.asset(
    name=tables.REC_EVALUATION,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scipy", "duckdb"},
    deps=[tables.EVENTS, tables.USER_SEGMENTS],
)
def rec_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
    page_embeddings: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per method: HR/NDCG/recall/MAP@k, coverage, novelty on a time-based split."""
    params = config.params()
    try:
        catalogue = rec.build_catalogue(pages, page_embeddings, params)
        with warehouse.get_connection() as con:
            segments, seg_note = _segments(con, params)
            if segments is not None:
                seg_note += " (assigned on all history: mild leakage into the test week)"
            result = rec_eval.run_evaluation(
                con, catalogue, params, segments, test_days=config.test_days, note=seg_note
            )
    except rec.RecommendationError as exc:
        raise _fail(exc) from exc
    by_method = {r["method"]: r for r in result.iter_rows(named=True)}
    hybrid = by_method.get("hybrid", {})
    pop = by_method.get("global_popularity", {})
    meta = {
        "users_evaluated": int(result["users_evaluated"].max() or 0),
        "cutoff": str(result["cutoff_ts"][0]),
        "hybrid_ndcg_at_10": float(hybrid.get("ndcg_at_k", 0.0)),
        "global_popularity_ndcg_at_10": float(pop.get("ndcg_at_k", 0.0)),
        "hybrid_lift_over_popularity": round(hybrid.get("ndcg_at_k", 0.0) / pop["ndcg_at_k"], 3)
        if pop.get("ndcg_at_k")
        else 0.0,
        "table": markdown_preview(
            result.drop("cutoff_ts", "test_end_ts", "note", "k", "is_baseline"),
            rows=len(rec_eval.METHODS),
        ),
        "note": result["note"][0] or "none",
    }
    context.log.info(f"rec_evaluation: {meta['note']}")
    return dg.Output(result, metadata=meta)


@dg.asset(
    name=tables.ADMIN_INSIGHTS,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "polars"},
    deps=[tables.EVENTS, tables.USER_RECOMMENDATIONS],
)
def admin_insights(
    config: InsightsConfig,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
    page_embeddings: pl.DataFrame,
    similar_pages: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per actionable finding (exit/bounce, funnel drop-off, coverage gap, island)."""
    candidates = set(pages["page_type"].drop_nulls().unique().to_list()) - set(
        rec.DEFAULT_NON_RECOMMENDABLE
    )
    with warehouse.get_connection() as con:
        end = rec.data_end(con)
        shown = con.execute(
            f"SELECT page_id, count(DISTINCT user_id) AS users "
            f"FROM main.{tables.USER_RECOMMENDATIONS} GROUP BY page_id"
        ).pl()
        n_users = con.execute(
            f"SELECT count(DISTINCT user_id) FROM main.{tables.USER_RECOMMENDATIONS}"
        ).fetchone()[0]
        frame = insights.build_insights(
            con,
            pages,
            page_embeddings,
            similar_pages,
            shown,
            int(n_users),
            candidates,
            end,
            config.params(),
        )
    return dg.Output(
        frame,
        metadata={
            "insights": frame.height,
            "by_kind": dg.MetadataValue.json(insights.severity_counts(frame)),
            "high_severity": frame.filter(pl.col("severity") == "high").height,
            "preview": markdown_preview(
                frame.select("kind", "severity", "subject_title", "details"), rows=15
            ),
        },
    )
