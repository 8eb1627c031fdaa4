"""Per-user conversion and at-risk predictions with reasons (group "predictions")."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features
from ubap_assets.core.predictions import ServedModel, predict_users
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.warehouse import tables as t

GROUP = "predictions"
OWNERS = ["team:analytics"]
KINDS = {"xgboost", "scikit-learn", "polars"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


def served_model(cards: pl.DataFrame, task: str, store: ModelStore) -> ServedModel:
    """The task's model in service (its best card, loaded from the store), or why none is."""
    best = cards.filter((pl.col("task") == task) & pl.col("is_best"))
    if not best.is_empty():
        card = best.row(0, named=True)
        artifact = store.load(card["model_version"], task, card["model"])
        return ServedModel(card["model"], artifact, float(card["threshold"]))
    insufficient = cards.filter((pl.col("task") == task) & pl.col("note").is_not_null())
    if not insufficient.is_empty():
        return ServedModel.missing(insufficient["note"][0])
    return ServedModel.missing(f"{task}: no model in model_cards; materialize model_training")


@dg.asset(
    name=t.USER_PREDICTIONS,
    **STAGE,
    deps=[t.USER_DAILY, t.USERS],
)
def user_predictions(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    model_store: ModelStore,
    model_cards: pl.DataFrame,
) -> dg.Output:
    """One row per user: probability of a purchase within the horizon and that the next visit
    is a bounce (at risk), their ranks, three reasons per task from that task's own model, and
    the model version; a task with insufficient data has null scores and a note saying why.

    Scored every night at the data end (features from user_daily) with the models in
    service; it never retrains (model_training does, once per training period)."""
    if model_cards.is_empty():
        raise dg.Failure(
            description="user_predictions: model_cards is empty; materialize model_training first"
        )
    card = model_cards.row(0, named=True)
    version = card["model_version"]
    trained_to = card.get("training_end")  # absent from cards written before the cadence
    lookback = int(card["lookback_days"])
    conversion = served_model(model_cards, "conversion", model_store)
    bounce = served_model(model_cards, "bounce", model_store)
    try:
        with warehouse.get_connection() as con:
            _, end = features.daily_span(con)
            user_features = features.compute_features(con, end, lookback)
    except features.FeatureWindowError as err:
        raise dg.Failure(description=f"user_predictions: {err}") from err
    frame = predict_users(
        user_features,
        conversion=conversion,
        bounce=bounce,
        model_version=version,
        scored_at=end,
    )
    for served in (conversion, bounce):
        if served.note:
            context.log.warning(f"user_predictions: {served.note}; its scores are null")
    at_risk = frame.filter(pl.col("at_risk").fill_null(False)).height
    top = frame.head(10).select("user_id", "conversion_probability", "reason_1", "reason_2")
    risky = (
        frame.sort("at_risk_rank", nulls_last=True)
        .head(10)
        .select("user_id", "at_risk_probability", "at_risk_reason_1", "at_risk_reason_2")
    )
    mean_conversion = frame["conversion_probability"].mean()
    return dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "model_version": version,
            "conversion_model": conversion.name or f"none: {conversion.note}",
            "bounce_model": bounce.name or f"none: {bounce.note}",
            "scored_at": end.isoformat(),
            # the models in service were trained on the data up to their period's boundary
            "models_training_end": trained_to.isoformat() if trained_to else "unknown",
            "lookback_days": lookback,
            "mean_conversion_probability": round(float(mean_conversion), 4)
            if mean_conversion is not None
            else None,
            "at_risk_users": at_risk,
            "high_value": markdown_preview(top),
            "at_risk": markdown_preview(risky),
        },
    )
