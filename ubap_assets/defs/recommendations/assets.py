"""Recommendations: page embeddings, similar pages, per-user hybrid lists, evaluation, insights."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import cadence, features, insights, recommend, segmentation
from ubap_assets.core.recommend import evaluation, item_graph, tuning
from ubap_assets.defs.recommendations.config import (
    EvaluationConfig,
    InsightsConfig,
    RecommendationsConfig,
    SimilarPagesConfig,
)
from ubap_assets.lib.embedder import Embedder
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.run_partitions import first_day_of_run
from ubap_assets.settings import current_settings
from ubap_assets.warehouse import tables
from ubap_assets.warehouse.introspect import table_exists

GROUP = "recommendations"
OWNERS = ["team:analytics"]


# Both fitted assets read the daily (user, page) aggregates and segments through the
# warehouse, never the raw events nor an IO-manager input.
FITTED_FROM_DAILY = {
    "group_name": GROUP,
    "owners": OWNERS,
    "kinds": {"scipy", "duckdb"},
    "deps": [tables.USER_PAGE_DAILY, tables.USER_SEGMENTS],
}


@contextmanager
def failing_run_on_bad_input() -> Iterator[None]:
    """A RecommendationError becomes a Dagster failure whose message names the fix."""
    try:
        yield
    except recommend.RecommendationError as exc:
        raise dg.Failure(description=str(exc), metadata={"fix": "see the message"}) from exc


@dg.asset(name=tables.PAGE_EMBEDDINGS, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"})
def page_embeddings(
    context: dg.AssetExecutionContext,
    embedder: Embedder,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per page: the L2-normalized embedding of its title, description and category.
    Only pages whose text or embedding model changed since the stored table are embedded; the
    others keep their stored vector (the model is not even loaded when nothing changed)."""
    with failing_run_on_bad_input():
        texts = recommend.page_texts(pages)
    with warehouse.get_connection() as con:
        stored = (
            con.execute(
                f"SELECT page_id, text, model, embedding FROM main.{tables.PAGE_EMBEDDINGS}"
            ).pl()
            if table_exists(con, tables.PAGE_EMBEDDINGS)
            else None
        )
    started = time.perf_counter()
    with failing_run_on_bad_input():
        refresh = recommend.refresh_embeddings(texts, stored, embedder.model_id(), embedder.embed)
    frame = refresh.frame
    empty = frame.filter(~pl.col("has_text"))
    if empty.height:
        context.log.warning(f"{empty.height} pages have no text: zero vectors ({empty['page_id']})")
    return dg.Output(
        frame,
        metadata={
            "model": embedder.model_id(),
            "dim": int(frame["dim"][0]),
            "pages": frame.height,
            "embedded_pages": refresh.embedded_pages,
            "reused_pages": refresh.reused_pages,
            "pages_without_text": empty.height,
            "embed_seconds": round(time.perf_counter() - started, 2),
        },
    )


@dg.asset(name=tables.SIMILAR_PAGES, group_name=GROUP, owners=OWNERS, kinds={"numpy", "duckdb"})
def similar_pages(
    config: SimilarPagesConfig, page_embeddings: pl.DataFrame, pages: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """One row per (page, neighbour): the k most similar other pages by cosine similarity."""
    frame = recommend.similar_pages(page_embeddings, pages, config.k)
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


def load_segments(con, params: recommend.RecommenderParams) -> tuple[pl.DataFrame | None, str]:
    """user_segments when the config uses segments, with a note on where they came from."""
    if not params.use_segments:
        return None, "segments disabled by config"
    return recommend.load_segments(con)


def segments_before(
    con, params: recommend.RecommenderParams, test_start
) -> tuple[pl.DataFrame | None, str]:
    """The evaluation's segments: the segmentation fit in service (fitted at the training
    boundary) labelling each user from the features before the test window, so they neither
    peek into it nor change between two boundaries; user_segments when no fit is stored."""
    if not params.use_segments:
        return None, "segments disabled by config"
    fit = None
    if table_exists(con, tables.SEGMENT_MODEL):
        fit = segmentation.fit_from_table(con.execute(f"SELECT * FROM {tables.SEGMENT_MODEL}").pl())
    if fit is None:
        segments, note = recommend.load_segments(con)
        return segments, note + " (assigned on all history: mild leakage into the test week)"
    first, _ = features.daily_span(con)
    user_features = features.compute_features(con, test_start, (test_start - first).days)
    labelled = segmentation.assign_segments(user_features, fit).segments
    frame = labelled.select(
        "user_id", pl.col("segment_id").cast(pl.String), pl.col("segment_name").cast(pl.String)
    )
    return frame, (
        f"segments of the fit in service, each user labelled from the features before the "
        f"test window ({test_start.date()}; {frame['segment_id'].n_unique()} segments)"
    )


def _item_graph_dir(warehouse: DuckDBResource) -> Path | None:
    """Where the served item graphs are kept: beside the warehouse file (none in memory)."""
    database = warehouse.database
    if not database or database.startswith(":memory:"):
        return None
    return Path(database).parent / "rec_item_graph"


@dg.asset(name=tables.USER_RECOMMENDATIONS, **FITTED_FROM_DAILY)
def user_recommendations(
    context: dg.AssetExecutionContext,
    config: RecommendationsConfig,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
    users: pl.DataFrame,
    page_embeddings: pl.DataFrame,
    rec_evaluation: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per (user, rank): the served method's top-k pages for a user, with source and
    reason. The served method and its knobs are rec_evaluation's choice on the validation
    window (tuned at the last training boundary). Every night each user's whole history to
    the data end is scored, so every event of a user counts, and the evaluation's exclusion
    policy applies. The history comes from a running state (rec_interaction_state) plus the
    days after its weekly cut, so a night's read does not grow with the history; a run that
    rewrote a day before the cut rebuilds it. The item graph the histories are scored against
    (similarities, EASE) is fitted once a week, on the interactions before that cut, and kept
    beside the warehouse (core/recommend/item_graph.py)."""
    with failing_run_on_bad_input():
        params, selection = tuning.served_params(rec_evaluation, config.params())
    started = time.perf_counter()
    with failing_run_on_bad_input():
        with warehouse.get_connection() as con:
            end = recommend.data_end(con)
            segments, segments_note = load_segments(con, params)
            catalogue = recommend.build_catalogue(pages, page_embeddings, params)
            train, read_note = tuning.served_interactions(
                con, catalogue, params, end, first_day_of_run(context.run.tags)
            )
            graph, graph_note = item_graph.served_item_graph(
                con, catalogue, params, _item_graph_dir(warehouse)
            )
            model = tuning.fit_until(con, catalogue, params, segments, end, train, graph)
        # Everyone in users, plus anyone with history whom users does not list yet.
        user_ids = pl.concat(
            [
                users.select(pl.col("user_id").cast(pl.String)),
                pl.DataFrame({"user_id": model.train.user_ids}),
            ]
        ).unique()
        lists = recommend.recommendation_lists(model, user_ids["user_id"].sort().to_numpy(), end)
    for note in (read_note, graph_note, *model.notes):
        context.log.info(note)
    by_source = lists.group_by("source").agg(pl.col("user_id").n_unique()).sort("source")
    served = rec_evaluation.filter(pl.col("is_served")) if "is_served" in rec_evaluation else None
    return dg.Output(
        lists,
        metadata={
            "users": lists["user_id"].n_unique(),
            "rows": lists.height,
            "users_with_history": model.train.n_users,
            "users_by_source": dg.MetadataValue.json(dict(by_source.iter_rows())),
            "catalogue_coverage": round(
                float(lists["page_id"].n_unique() / catalogue.n_recommendable), 4
            ),
            "served_method": served["method"][0] if served is not None and served.height else "",
            "selection": selection,
            "exclude": params.exclude,
            "half_life_days": params.half_life_days or "no decay",
            "ease_lambda": params.ease_lambda,
            "weights": dg.MetadataValue.json(params.component_weights),
            "segments": segments_note,
            "notes": "; ".join(model.notes) or "none",
            "interactions": read_note,
            "item_graph": graph_note,
            "seconds": round(time.perf_counter() - started, 2),
            "preview": markdown_preview(
                lists.select("user_id", "rank", "title", "source", "reason")
            ),
        },
    )


@dg.asset(
    name=tables.REC_EVALUATION,
    **{
        **FITTED_FROM_DAILY,
        "deps": [*FITTED_FROM_DAILY["deps"], tables.USER_DAILY, tables.SEGMENT_MODEL],
    },
)
def rec_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    warehouse: DuckDBResource,
    pages: pl.DataFrame,
    page_embeddings: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """One row per method: NDCG/recall@k with bootstrap 95% intervals, HR, MAP, coverage and
    novelty on the test window, knobs tuned on the validation window before it, and which
    method is served. The windows end at the training boundary (core.cadence), not at the data
    end, so every run until the next boundary gives the same table."""
    params = config.params()
    grid = config.grid()
    every_days = current_settings().retrain_every_days
    with failing_run_on_bad_input():
        catalogue = recommend.build_catalogue(pages, page_embeddings, params)
        with warehouse.get_connection() as con:
            boundary = cadence.training_end(recommend.data_end(con), every_days)
            test_start = boundary - timedelta(days=config.test_days)
            segments, segments_note = segments_before(con, params, test_start)
            windows_note = (
                f"windows end at the training boundary {boundary.date()} (retrained every "
                f"{every_days} days), not at the data end"
            )
            result = evaluation.run_evaluation(
                con,
                catalogue,
                params,
                segments,
                test_days=config.test_days,
                validation_days=config.validation_days,
                grid=grid,
                min_users=config.min_users,
                n_resamples=config.bootstrap_resamples,
                note="; ".join(filter(None, [windows_note, segments_note])),
                end=boundary,
                max_tuning_users=config.max_tuning_users,
                max_test_users=config.max_test_users,
            )
    context.log.info(f"rec_evaluation: {result['note'][0]}")
    meta = evaluation_metadata(result) | {
        "training_boundary": str(boundary.date()),
        "retrain_every_days": every_days,
    }
    return dg.Output(result, metadata=meta)


def evaluation_metadata(result: pl.DataFrame) -> dict:
    """What a person wants in the UI: status and n, the served method and why, the table."""
    first = result.row(0, named=True)
    served = result.filter(pl.col("is_served"))
    meta = {
        "status": first["status"],
        "users_evaluated": first["users_evaluated"],
        "validation_users": first["validation_users"],
        "candidate_pages": first["candidate_pages"],
        "k": first["k"],
        "windows": f"validation {first['validation_start_ts']} .. test {first['cutoff_ts']} .. "
        f"{first['test_end_ts']}",
        "served_method": served["method"][0] if served.height else "",
        "selection": (served["selection"][0] if served.height else "") or "",
        "table": markdown_preview(
            result.select(
                "method",
                "users_evaluated",
                "ndcg_at_k",
                "ndcg_ci_low",
                "ndcg_ci_high",
                "recall_at_k",
                "coverage",
                "validation_ndcg_at_k",
                "is_served",
            ),
            rows=len(evaluation.METHODS),
        ),
        "note": first["note"] or "none",
    }
    for method in ("hybrid", "global_popularity"):
        row = result.filter(pl.col("method") == method)
        if row.height and row["ndcg_at_k"][0] is not None:
            meta[f"{method}_ndcg_at_k"] = row["ndcg_at_k"][0]
    return meta


@dg.asset(
    name=tables.ADMIN_INSIGHTS,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "polars"},
    # The funnel from sessions; entry and exit pages from the last window_days of events (a
    # bounded read); the data end from user_page_daily.
    deps=[tables.EVENTS, tables.SESSIONS, tables.USER_PAGE_DAILY, tables.USER_RECOMMENDATIONS],
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
        recommend.DEFAULT_NON_RECOMMENDABLE
    )
    with warehouse.get_connection() as con:
        end = recommend.data_end(con)
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
