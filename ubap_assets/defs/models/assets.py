"""Conversion and bounce models: metrics, model cards and curves (group "models")."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import features, model_evaluation, models
from ubap_assets.core.model_cards import model_cards_frame
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.model_store import ModelStore
from ubap_assets.lib.warehouse_io import kept_previous
from ubap_assets.settings import current_settings
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables

GROUP = "models"
OWNERS = ["team:analytics"]
KINDS = {"scikit-learn", "xgboost", "duckdb"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


class ModelsConfig(dg.Config):
    horizon_days: int = Field(
        default=0,
        ge=0,
        description="Label window after a cutoff: purchase / next session within it. 0 = 14 "
        "days, shortened (to at least 7) when the history cannot hold three such windows "
        "(train, validation, test) and a week of features; a positive value is used as given.",
    )
    lookback_days: int = Field(
        default=0,
        description="Days of history the features read before a cutoff; 0 = all that exists "
        "before the training cutoff (the same length at every cutoff).",
    )
    seed: int = Field(default=0, description="Seed of every model and of the bootstrap.")
    min_class_count: int = Field(
        default=model_evaluation.MIN_CLASS_COUNT,
        ge=1,
        description="Fewest positives (and negatives) each window needs; a task below it is "
        "'insufficient data' and serves no model.",
    )
    max_users_per_window: int = Field(
        default=models.MAX_USERS_PER_WINDOW,
        ge=0,
        description="Most users each window (train, validation, test) keeps: a larger window "
        "is cut to a deterministic sample (the same users on every run), so training time "
        "and memory stop growing with the population. The metrics' note and n say when and "
        "how much was sampled. 0 = every user.",
    )
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


def usable_previous_models(warehouse: DuckDBResource, model_store: ModelStore) -> str | None:
    """The version of the models an earlier run stored, when its tables and the artifact of
    every model in service (user_predictions loads those) are still there; None otherwise."""
    with warehouse.get_connection() as con:
        if not set(MODEL_TABLES) <= warehouse_tables(con):
            return None
        best = con.execute(
            f"SELECT task, model, model_version FROM {t.MODEL_CARDS} WHERE is_best"
        ).fetchall()
    if not best or len({v for *_, v in best}) != 1:
        return None
    version = best[0][2]
    if not all(model_store.path(version, task, model).exists() for task, model, _ in best):
        return None
    return version


def cadence_metadata(plan: features.TimePlan, data_end: datetime) -> dict[str, object]:
    """Where the training data end and when the next training period starts."""
    return {
        "training_end": plan.end.isoformat(),
        "retrain_every_days": plan.retrain_every_days,
        "next_training_end": plan.next_training_end.isoformat(),
        "data_end": data_end.isoformat(),
    }


@dg.multi_asset(
    outs={
        t.MODEL_METRICS: dg.AssetOut(
            description="One row per (task, model, split): on the validation window (which "
            "chose the model, its hyper-parameters and threshold) and the later test window "
            "(reported): n, positives, ROC-AUC, PR-AUC, Brier, log loss, F1, precision, recall "
            "and lift at the threshold, each with a bootstrap 95% interval; status 'ok' or "
            "'insufficient data' with the numbers; the true-propensity ceiling.",
            **STAGE,
        ),
        t.MODEL_CARDS: dg.AssetOut(
            description="One row per (task, model) fitted in the run (one per task with "
            "insufficient data): which window chose what, features, cutoffs, label windows, "
            "test metrics, threshold, leakage guard, reason method, artifact.",
            **STAGE,
        ),
        t.MODEL_CURVES: dg.AssetOut(
            description="One row per point of a ROC or PR curve per (task, model), on the "
            "test window.",
            **STAGE,
        ),
    },
    deps=[t.SESSIONS, t.USER_DAILY, t.USERS],
)
def model_training(
    context: dg.AssetExecutionContext,
    config: ModelsConfig,
    warehouse: DuckDBResource,
    model_store: ModelStore,
    user_personas: pl.DataFrame,
):
    """Fit on the training window, choose on the validation window, report on the test window.

    The data end at the training boundary (the start of the current training period,
    UBAP_RETRAIN_EVERY_DAYS, core/cadence.py), not at the data end: every run inside a period
    trains the same models from the daily aggregates (user_daily, sessions).

    A task with too few positives or negatives in any window is marked "insufficient data" and
    serves no model; the other task still trains. When the history cannot hold the windows at
    all and an earlier run's models exist, they stay in service: nothing is written, and each
    table's materialization says why it was not refreshed. Without earlier models the step
    fails and `publish_after_failure` publishes everything else.
    """
    version = context.run.run_id
    every_days = current_settings().retrain_every_days
    try:
        with warehouse.get_connection() as con:
            plan, data_end = models.training_plan(
                con, every_days, config.horizon_days, config.lookback_days
            )
            context.log.info(
                f"models: data end {data_end:%Y-%m-%d}, training data end at the boundary "
                f"{plan.end:%Y-%m-%d} (every {every_days} days; "
                f"next {plan.next_training_end:%Y-%m-%d})"
            )
            results = models.train_all(
                con,
                plan,
                personas=user_personas,
                seed=config.seed,
                n_jobs=config.n_jobs,
                threads=config.threads,
                min_class_count=config.min_class_count,
                max_users=config.max_users_per_window,
            )
    except features.FeatureWindowError as err:
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
        if not result.served:
            context.log.warning(f"models: {result.note}; no {task} model is served")
            continue
        for name, model in result.models.items():
            card = {
                "task": task,
                "label": result.label,
                "model": name,
                "model_version": version,
                "params": result.params[name],
                "features": result.design.names,
                "plan": plan.as_dict(),
                "metrics": result.metrics.filter(pl.col("model") == name).to_dicts(),
                "is_best": name == result.best,
                "reason_method": models.REASON_METHODS[name],
            }
            artifact = {"model": model, "design": result.design}
            paths[(task, name)] = model_store.save(version, task, name, artifact, card)
    pruned = model_store.prune(config.keep_versions, protect={version})
    if pruned:
        context.log.info(f"models: removed {len(pruned)} old model versions: {pruned}")
    metrics = pl.concat([r.metrics for r in results.values()]).with_columns(
        model_version=pl.lit(version)
    )
    cards = model_cards_frame(results, plan, version, paths, created_at)
    curves = [r.curves for r in results.values() if r.served]
    curves = pl.concat(curves) if curves else pl.DataFrame(schema=model_evaluation.CURVES_SCHEMA)

    summary: dict[str, object] = {
        "model_version": version,
        **cadence_metadata(plan, data_end),
        **plan.as_dict(),
    }
    for task, result in results.items():
        summary[f"{task}_status"] = result.status
        summary[f"{task}_label"] = result.label
        summary[f"{task}_users_per_window"] = result.window_users_text()
        if not result.served:
            summary[f"{task}_note"] = result.note
            continue
        best = result.metrics.filter(pl.col("is_best") & (pl.col("split") == models.TEST)).row(
            0, named=True
        )
        summary[f"{task}_best_model"] = result.best
        summary[f"{task}_test_n"] = best["n"]
        summary[f"{task}_test_positives"] = best["positives"]
        for metric in ("roc_auc", "pr_auc"):
            summary[f"{task}_test_{metric}"] = (
                f"{best[metric]:.4f} [{best[f'{metric}_ci_low']:.4f}, "
                f"{best[f'{metric}_ci_high']:.4f}]"
            )
        summary[f"{task}_threshold"] = round(best["threshold"], 4)
        if best["auc_vs_ceiling"] is not None:
            summary[f"{task}_auc_vs_ceiling"] = round(best["auc_vs_ceiling"], 4)
    shown = metrics.filter(pl.col("split") == models.TEST).select(
        "task",
        "model",
        "status",
        "n",
        "positives",
        "roc_auc",
        "roc_auc_ci_low",
        "roc_auc_ci_high",
        "pr_auc",
        "f1",
        "threshold",
        "is_best",
        "note",
    )
    context.log.info(f"models: {summary}")
    yield dg.Output(
        metrics,
        t.MODEL_METRICS,
        metadata={
            "rows": metrics.height,
            **summary,
            "test_metrics": markdown_preview(shown),
        },
    )
    yield dg.Output(
        cards,
        t.MODEL_CARDS,
        metadata={
            "rows": cards.height,
            "model_version": version,
            **cadence_metadata(plan, data_end),
            "store": dg.MetadataValue.path(str(model_store.root_path() / version)),
            "cards": markdown_preview(
                cards.select(
                    "task",
                    "model",
                    "status",
                    "is_best",
                    "params_json",
                    "chosen_on",
                    "reported_on",
                    "artifact_path",
                )
            ),
        },
    )
    yield dg.Output(curves, t.MODEL_CURVES, metadata={"rows": curves.height})
