"""Conversion and bounce models: metrics, model cards and curves (group "models")."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import features, models
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.lib.warehouse_io import kept_previous
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables

GROUP = "models"
OWNERS = ["team:analytics"]
KINDS = {"scikit-learn", "xgboost", "duckdb"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


class ModelsConfig(dg.Config):
    horizon_days: int = Field(
        default=14, description="Label window after a cutoff: purchase / next session within it."
    )
    lookback_days: int = Field(
        default=0,
        description="Days of history the features read before a cutoff; 0 = all that exists "
        "before the training cutoff (the same length at every cutoff).",
    )
    seed: int = Field(default=0, description="Seed of every model.")
    n_jobs: int = Field(default=2, description="Threads of the random forest.")
    threads: int = Field(
        default=1,
        description="BLAS/OpenMP threads (XGBoost, scikit-learn); more spin-wait on a busy box.",
    )
    keep_versions: int = Field(
        default=3,
        ge=1,
        description="Model versions (one folder per training run) kept on disk; older ones are "
        "removed after a successful training, never the version in service.",
    )


MODEL_TABLES = (t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES)
# user_predictions needs each task's best model, and the conversion XGBoost for its reasons.
_TASKS = ("conversion", "bounce")


def usable_previous_models(warehouse: DuckDBResource, model_store: ModelStore) -> str | None:
    """The version of the models an earlier run stored, when its tables and every artifact that
    user_predictions loads are still there; None otherwise."""
    with warehouse.get_connection() as con:
        if not set(MODEL_TABLES) <= warehouse_tables(con):
            return None
        best = con.execute(
            f"SELECT task, model, model_version FROM {t.MODEL_CARDS} WHERE is_best"
        ).fetchall()
    if {task for task, _, _ in best} != set(_TASKS) or len({v for *_, v in best}) != 1:
        return None
    version = best[0][2]
    needed = [(task, model) for task, model, _ in best] + [("conversion", "xgboost")]
    if not all(model_store.path(version, task, model).exists() for task, model in needed):
        return None
    return version


@dg.multi_asset(
    outs={
        t.MODEL_METRICS: dg.AssetOut(
            description="One row per (task, model): ROC-AUC, PR-AUC, Brier, log loss and the "
            "F1-optimal threshold on the held-out later window; the ceiling of the true "
            "propensities; which model is used.",
            **STAGE,
        ),
        t.MODEL_CARDS: dg.AssetOut(
            description="One row per (task, model) fitted in the run: features, cutoffs, label "
            "windows, metrics, threshold, leakage guard and where the artifact is stored.",
            **STAGE,
        ),
        t.MODEL_CURVES: dg.AssetOut(
            description="One row per point of a ROC or PR curve per (task, model).",
            **STAGE,
        ),
    },
    deps=[t.EVENTS, t.USERS, t.PAGES],
)
def model_training(
    context: dg.AssetExecutionContext,
    config: ModelsConfig,
    warehouse: DuckDBResource,
    model_store: ModelStore,
    user_personas: pl.DataFrame,
):
    """Train on an earlier cutoff, validate on a later one; the best by PR-AUC is used.

    When the data cannot train a classifier (one class in the labels, too few days) and an
    earlier run's models exist, they stay in service: nothing is written, and each table's
    materialization says why it was not refreshed. Without earlier models the step fails and
    `publish_after_failure` publishes everything else.
    """
    version = context.run.run_id
    try:
        with warehouse.get_connection() as con:
            first, end = features.event_span(con)
            plan = features.plan_windows(first, end, config.horizon_days, config.lookback_days)
            results = models.train_all(
                con,
                plan,
                personas=user_personas,
                seed=config.seed,
                n_jobs=config.n_jobs,
                threads=config.threads,
            )
    except (features.FeatureWindowError, models.LabelError) as err:
        kept = usable_previous_models(warehouse, model_store)
        if kept is None:
            raise dg.Failure(
                description=f"models: {err} (no earlier models to keep in service)"
            ) from err
        reason = f"models not retrained: {err}; serving the models of run {kept[:8]}"
        context.log.warning(reason)
        for name in MODEL_TABLES:
            yield dg.Output(None, name, metadata=kept_previous(reason))
        return
    except models.LeakageError as err:
        raise dg.Failure(description=f"models: {err}") from err

    # Everything is computed: only now store artifacts and publish the tables.
    paths = {}
    created_at = datetime.now(UTC).replace(tzinfo=None)
    for task, result in results.items():
        for name, model in result.models.items():
            card = {
                "task": task,
                "model": name,
                "model_version": version,
                "features": result.design.names,
                "plan": plan.as_dict(),
                "metrics": result.metrics.filter(pl.col("model") == name).to_dicts()[0],
                "is_best": name == result.best,
            }
            artifact = {"model": model, "design": result.design}
            paths[(task, name)] = model_store.save(version, task, name, artifact, card)
    pruned = model_store.prune(config.keep_versions, protect={version})
    if pruned:
        context.log.info(f"models: removed {len(pruned)} old model versions: {pruned}")
    metrics = pl.concat([r.metrics for r in results.values()]).with_columns(
        model_version=pl.lit(version)
    )
    cards = models.model_cards_frame(results, plan, version, paths, created_at)
    curves = pl.concat([r.curves for r in results.values()])

    summary: dict[str, object] = {"model_version": version, **plan.as_dict()}
    for task, result in results.items():
        best = result.metrics.filter(pl.col("is_best")).row(0, named=True)
        summary[f"{task}_best_model"] = result.best
        summary[f"{task}_roc_auc"] = round(best["roc_auc"], 4)
        summary[f"{task}_pr_auc"] = round(best["pr_auc"], 4)
        summary[f"{task}_threshold"] = round(best["threshold"], 4)
        if best["auc_vs_ceiling"] is not None:
            summary[f"{task}_auc_vs_ceiling"] = round(best["auc_vs_ceiling"], 4)
    shown = metrics.select(models.SCORE_COLUMNS)
    context.log.info(f"models: {summary}")
    yield dg.Output(
        metrics,
        t.MODEL_METRICS,
        metadata={
            "rows": metrics.height,
            **summary,
            "metrics": markdown_preview(shown),
        },
    )
    yield dg.Output(
        cards,
        t.MODEL_CARDS,
        metadata={
            "rows": cards.height,
            "model_version": version,
            "store": dg.MetadataValue.path(str(model_store.root_path() / version)),
            "cards": markdown_preview(
                cards.select(
                    "task",
                    "model",
                    "is_best",
                    "train_cutoff",
                    "valid_cutoff",
                    "lookback_days",
                    "artifact_path",
                )
            ),
        },
    )
    yield dg.Output(curves, t.MODEL_CURVES, metadata={"rows": curves.height})
