"""Per-user conversion and at-risk predictions with reasons (group "predictions")."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features
from ubap_assets.core.predictions import predict_users
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.warehouse import tables as t

GROUP = "predictions"
OWNERS = ["team:analytics"]
KINDS = {"xgboost", "scikit-learn", "polars"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


def _best(cards: pl.DataFrame, task: str) -> dict:
    rows = cards.filter((pl.col("task") == task) & pl.col("is_best"))
    if rows.is_empty():
        raise dg.Failure(
            description=f"user_predictions: model_cards has no best {task} model; "
            "materialize model_metrics/model_cards first"
        )
    return rows.row(0, named=True)


@dg.asset(
    name=t.USER_PREDICTIONS,
    **STAGE,
    deps=[t.EVENTS, t.USERS, t.PAGES],
)
def user_predictions(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    model_store: ModelStore,
    model_cards: pl.DataFrame,
) -> dg.Output:
    """One row per user: probability of a purchase in the next horizon, probability that the
    next visit is a bounce (at risk), their ranks, top three reasons, and the model version."""
    conv, bounce = _best(model_cards, "conversion"), _best(model_cards, "bounce")
    version = conv["model_version"]
    lookback = int(conv["lookback_days"])
    try:
        with warehouse.get_connection() as con:
            _, end = features.event_span(con)
            user_features = features.compute_features(con, end, lookback)
    except features.FeatureWindowError as err:
        raise dg.Failure(description=f"user_predictions: {err}") from err
    frame = predict_users(
        user_features,
        conversion=model_store.load(version, "conversion", conv["model"]),
        bounce=model_store.load(version, "bounce", bounce["model"]),
        explainer=model_store.load(version, "conversion", "xgboost"),
        conversion_model=conv["model"],
        bounce_model=bounce["model"],
        bounce_threshold=float(bounce["threshold"]),
        model_version=version,
        scored_at=end,
    )
    at_risk = frame.filter(pl.col("at_risk")).height
    top = frame.head(10).select("user_id", "conversion_probability", "reason_1", "reason_2")
    risky = (
        frame.sort("at_risk_rank")
        .head(10)
        .select("user_id", "at_risk_probability", "conversion_probability")
    )
    return dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "model_version": version,
            "conversion_model": conv["model"],
            "bounce_model": bounce["model"],
            "scored_at": end.isoformat(),
            "lookback_days": lookback,
            "mean_conversion_probability": round(float(frame["conversion_probability"].mean()), 4),
            "at_risk_users": at_risk,
            "high_value": markdown_preview(top),
            "at_risk": markdown_preview(risky),
        },
    )
