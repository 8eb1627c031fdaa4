"""A user's recommendations and history, similar pages and the evaluation (Recommendations)."""

import polars as pl

from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading

REC_METRICS: dict[str, str] = {
    "hr_at_k": "Hit rate@k",
    "ndcg_at_k": "NDCG@k",
    "recall_at_k": "Recall@k",
    "map_at_k": "MAP@k",
    "coverage": "Coverage",
    "novelty": "Novelty",
}


@cached
def sample_user_ids(snap: Snapshot, limit: int = 200) -> list[str]:
    """Users worth looking up first: those with personalised (hybrid) recommendations."""
    with reading(snap) as reader:
        return reader.users_with_recommendations(limit)


@cached
def user_profile(snap: Snapshot, user_id: str) -> dict | None:
    """The users row, with the segment and predictions when those tables exist."""
    with reading(snap) as reader:
        return reader.user_profile(user_id)


@cached
def user_recommendations(snap: Snapshot, user_id: str) -> pl.DataFrame:
    with reading(snap) as reader:
        found = reader.user_recommendations(user_id, limit=None)
    return found.select("rank", "page_id", "title", "source", "top_signal", "reason", "score")


@cached
def user_history(snap: Snapshot, user_id: str, limit: int = 15) -> pl.DataFrame:
    """The user's most recent page views with titles (what the recommendations build on)."""
    with reading(snap) as reader:
        return reader.recent_activity(user_id, limit)


@cached
def page_choices(snap: Snapshot) -> pl.DataFrame:
    """page_id and a display label, for pages that have neighbours."""
    with reading(snap) as reader:
        return reader.pages_with_neighbours()


@cached
def similar_pages(snap: Snapshot, page_id: str) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.similar_pages_with_category(page_id)


def evaluation_status(evaluation: pl.DataFrame) -> tuple[bool, str]:
    """(figures usable, one sentence on windows, users, served method and why)."""
    row = evaluation.row(0, named=True)
    ok = row.get("status", "ok") == "ok"
    served = evaluation.filter(pl.col("is_served")) if "is_served" in evaluation.columns else None
    served_text = ""
    if served is not None and served.height:
        served_row = served.row(0, named=True)
        served_text = f" Served: **{served_row['method']}** ({served_row.get('selection') or ''})."
    windows = (
        f"Knobs tuned on {row['validation_start_ts']} .. {row['cutoff_ts']}, "
        if row.get("validation_start_ts")
        else ""
    )
    sentence = (
        f"{windows}tested on {row['cutoff_ts']} .. {row['test_end_ts']}: "
        f"{row['users_evaluated']:,} users, k = {row['k']}"
        + (f" of {row['candidate_pages']:,} candidate pages" if row.get("candidate_pages") else "")
        + f".{served_text}"
    )
    return ok, sentence


def evaluation_long(evaluation: pl.DataFrame) -> pl.DataFrame:
    """rec_evaluation in long form (method, kind, metric, value) for the comparison chart."""
    present = [m for m in REC_METRICS if m in evaluation.columns]
    return (
        evaluation.with_columns(
            kind=pl.when(pl.col("is_baseline")).then(pl.lit("baseline")).otherwise(pl.lit("model"))
        )
        .unpivot(index=["method", "kind"], on=present, variable_name="metric", value_name="value")
        .drop_nulls("value")  # "insufficient data" rows have no figures to draw
        .with_columns(pl.col("metric").replace_strict(REC_METRICS, default=pl.col("metric")))
    )
