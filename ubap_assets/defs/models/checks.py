"""Checks of the models: leakage guards recomputed from the daily tables and the sessions
(blocking: user_predictions waits on them), sound metrics, and warnings that are skipped when
the data cannot score them."""

from datetime import timedelta

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features, model_evaluation, models
from ubap_assets.lib.checks import skip, skippable_check
from ubap_assets.warehouse import tables as t

SPLITS = {"train": "train_cutoff", "validation": "valid_cutoff", "test": "test_cutoff"}

# Each label again, written independently of core/features.py: over the sessions that *start*
# in the label window (a session belongs to its start day), conversion = one of them has a
# purchase; bounce = the earliest of them (ties by session id) is a bounce.
_LABELS_FROM_SESSIONS_SQL = f"""
SELECT user_id,
       bool_or(purchases > 0) AS conversion,
       arg_min(is_bounce, struct_pack(s := session_start, i := session_id)) AS bounce
FROM {t.SESSIONS}
WHERE day >= ? AND day < ?
GROUP BY user_id
"""


def labels_against_sessions(
    con: duckdb.DuckDBPyConnection, labelled: pl.DataFrame, task: str, cutoff, horizon_days: int
) -> int:
    """Users whose ``label`` differs from the same label recomputed from ``sessions``
    (a user without a session in the window: no conversion, and no bounce label)."""
    start = cutoff.date()
    truth = con.execute(
        _LABELS_FROM_SESSIONS_SQL, [start, start + timedelta(days=horizon_days)]
    ).pl()
    joined = labelled.select("user_id", "label").join(
        truth.select("user_id", expected=pl.col(task)), on="user_id", how="left"
    )
    if task == "conversion":
        joined = joined.with_columns(pl.col("expected").fill_null(False))
    return joined.filter(pl.col("label").ne_missing(pl.col("expected"))).height


def _plan(card: dict) -> features.TimePlan:
    return features.TimePlan(
        first_day=card["train_cutoff"],
        end=card["label_window_test_end"],
        train_cutoff=card["train_cutoff"],
        valid_cutoff=card["valid_cutoff"],
        test_cutoff=card["test_cutoff"],
        horizon_days=int(card["horizon_days"]),
        lookback_days=int(card["lookback_days"]),
    )


@skippable_check(
    "label_windows_read_only_their_window",
    asset=t.MODEL_CARDS,
    description="Each task's labels at the train, validation and test cutoffs are unchanged "
    "when every day outside their window is removed from user_daily and sessions (no session "
    "that started before the cutoff, none after the window), equal a recomputation from the "
    "sessions by start day, and the three windows are disjoint and in time order. Skipped "
    "without a card.",
    blocking=True,
    ins={"model_cards": dg.AssetIn(t.MODEL_CARDS)},
)
def label_windows_read_only_their_window(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, model_cards: pl.DataFrame
):
    if model_cards.is_empty():
        skip(context, "no model card")
        return
    card = model_cards.row(0, named=True)
    plan = _plan(card)
    problems = []
    try:
        models.check_windows(plan)
    except models.LeakageError as err:
        problems.append(str(err))
    changed: dict[str, int] = {}
    recomputed: dict[str, int] = {}
    with warehouse.get_connection() as con:
        for split in SPLITS:
            cutoff = plan.cutoff(split)
            try:
                frame = features.compute_features(con, cutoff, plan.lookback_days)
            except features.FeatureWindowError as err:  # models kept from an earlier run
                skip(context, f"{err}")
                return
            for task, labeller in models.LABELLERS.items():
                key = f"{task}_{split}"
                changed[key] = features.label_window_guard(
                    con, frame, cutoff, plan.horizon_days, labeller
                )
                labelled = labeller(con, frame, cutoff, plan.horizon_days)
                recomputed[key] = labels_against_sessions(
                    con, labelled, task, cutoff, plan.horizon_days
                )
    problems += [f"{key}: {n} labels change" for key, n in changed.items() if n]
    problems += [
        f"{key}: {n} labels differ from the sessions" for key, n in recomputed.items() if n
    ]
    yield dg.AssetCheckResult(
        check_name="label_windows_read_only_their_window",
        passed=not problems,
        metadata={
            "windows": ", ".join(
                f"{s} [{plan.label_window(s)[0]:%Y-%m-%d}, {plan.label_window(s)[1]:%Y-%m-%d})"
                for s in SPLITS
            ),
            "labels_changed_without_outside_days": sum(changed.values()),
            "labels_differing_from_sessions": sum(recomputed.values()),
            "problems": dg.MetadataValue.md("\n".join(problems) or "none"),
        },
    )


@skippable_check(
    "training_features_ignore_future_events",
    asset=t.MODEL_CARDS,
    description="The features at the training cutoff are identical with and without "
    "every day of user_daily after it (the validation and test periods act as planted future "
    "activity). Skipped when the data no longer cover the cards' windows.",
    blocking=True,
    ins={"model_cards": dg.AssetIn(t.MODEL_CARDS)},
)
def training_features_ignore_future_events(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, model_cards: pl.DataFrame
):
    if model_cards.is_empty():
        skip(context, "no model card")
        return
    row = model_cards.row(0, named=True)
    try:
        with warehouse.get_connection() as con:
            differing = features.future_events_guard(con, row["train_cutoff"], row["lookback_days"])
    except features.FeatureWindowError as err:  # models kept from an earlier run
        skip(context, f"{err}")
        return
    yield dg.AssetCheckResult(
        check_name="training_features_ignore_future_events",
        passed=differing == 0,
        metadata={
            "train_cutoff": str(row["train_cutoff"]),
            "users_whose_features_changed": differing,
        },
    )


@skippable_check(
    "no_label_derivable_from_features",
    asset=t.MODEL_CARDS,
    description="No single feature separates a task's training labels: the lower end "
    f"of its ROC-AUC's bootstrap 95% interval stays below {models.LEAKAGE_AUC}. "
    "Skipped when no task had enough data to train.",
    blocking=True,
    ins={"model_cards": dg.AssetIn(t.MODEL_CARDS)},
)
def no_label_derivable_from_features(
    context: dg.AssetCheckExecutionContext, model_cards: pl.DataFrame
):
    trained = model_cards.filter(pl.col("max_single_feature_auc").is_not_null())
    if trained.is_empty():
        notes = "; ".join(model_cards["note"].drop_nulls().unique().to_list())
        skip(context, f"{notes or 'no card'}")
        return
    worst = trained.sort("max_single_feature_auc_ci_low", descending=True).row(0, named=True)
    yield dg.AssetCheckResult(
        check_name="no_label_derivable_from_features",
        passed=worst["max_single_feature_auc_ci_low"] < models.LEAKAGE_AUC,
        metadata={
            "task": worst["task"],
            "feature": worst["leakiest_feature"],
            "max_single_feature_auc": round(worst["max_single_feature_auc"], 4),
            "ci_low": round(worst["max_single_feature_auc_ci_low"], 4),
            "n_train": worst["n_train"],
            "limit": models.LEAKAGE_AUC,
        },
    )


@skippable_check(
    "models_below_ceiling",
    asset=t.MODEL_METRICS,
    description="On the test window no model's ROC-AUC interval lies above the "
    "generator's true propensities (that smells of leakage); a warning. Skipped "
    "without ground truth.",
    ins={"model_metrics": dg.AssetIn(t.MODEL_METRICS)},
)
def models_below_ceiling(context: dg.AssetCheckExecutionContext, model_metrics: pl.DataFrame):
    tested = model_metrics.filter(pl.col("split") == models.TEST)
    ceiling = tested.filter(pl.col("model") == models.CEILING)
    if ceiling.is_empty():
        skip(context, "no ground truth (no ceiling rows)")
        return
    fitted = tested.filter(pl.col("model") != models.CEILING).join(
        ceiling.select("task", ceiling_auc="roc_auc"), on="task"
    )
    above = fitted.filter(pl.col("roc_auc_ci_low") > pl.col("ceiling_auc"))
    yield dg.AssetCheckResult(
        check_name="models_below_ceiling",
        passed=above.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "best_auc_vs_ceiling": round(float(fitted["auc_vs_ceiling"].max()), 4),
            "models_above_ceiling": ", ".join(above["model"].to_list()) or "none",
        },
    )


@skippable_check(
    "served_models_beat_chance",
    asset=t.MODEL_METRICS,
    description="Each model in service ranks the test window better than chance: the "
    "lower end of its ROC-AUC's 95% interval is above 0.5; a warning. Skipped when no "
    "task had enough data (the numbers are in the log and model_metrics.note).",
    ins={"model_metrics": dg.AssetIn(t.MODEL_METRICS)},
)
def served_models_beat_chance(context: dg.AssetCheckExecutionContext, model_metrics: pl.DataFrame):
    served = model_metrics.filter(pl.col("is_best") & (pl.col("split") == models.TEST))
    skipped = model_metrics.filter(pl.col("status") == models.INSUFFICIENT)
    if served.is_empty():
        notes = "; ".join(skipped["note"].drop_nulls().unique().to_list())
        skip(context, f"insufficient data: {notes}")
        return
    weak = served.filter(pl.col("roc_auc_ci_low") <= 0.5)
    yield dg.AssetCheckResult(
        check_name="served_models_beat_chance",
        passed=weak.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **{
                f"{r['task']}_test_roc_auc": f"{r['roc_auc']:.3f} [{r['roc_auc_ci_low']:.3f}, "
                f"{r['roc_auc_ci_high']:.3f}] n={r['n']} positives={r['positives']}"
                for r in served.iter_rows(named=True)
            },
            "tasks_not_served": ", ".join(sorted(set(skipped["task"].to_list()))) or "none",
        },
    )


@dg.asset_check(asset=t.MODEL_METRICS, blocking=True)
def model_metrics_are_sound(model_metrics: pl.DataFrame) -> dg.AssetCheckResult:
    """Every 'ok' row has finite metrics inside their own 95% interval and both splits; each
    served task has exactly one model in service; every 'insufficient data' row has a note,
    no metric and no model in service."""
    ok = model_metrics.filter(pl.col("status") == models.OK)
    bad, outside = 0, 0
    if ok.height:
        bad = ok.filter(
            pl.any_horizontal(
                ~pl.col(c).is_finite().fill_null(False) for c in models.METRIC_COLUMNS
            )
        ).height
        outside = ok.filter(
            pl.any_horizontal(
                (pl.col(m) < pl.col(f"{m}_ci_low") - 1e-9)
                | (pl.col(m) > pl.col(f"{m}_ci_high") + 1e-9)
                for m in model_evaluation.METRICS
            )
        ).height
    served = ok.filter(pl.col("model") != models.CEILING)
    per_task = served.group_by("task").agg(
        best=pl.col("model").filter(pl.col("is_best")).n_unique(),
        splits=pl.col("split").n_unique(),
    )
    one_best = bool(
        per_task.is_empty() or ((per_task["best"] == 1) & (per_task["splits"] == 2)).all()
    )
    insufficient = model_metrics.filter(pl.col("status") == models.INSUFFICIENT)
    unexplained = insufficient.filter(
        pl.col("note").is_null() | pl.col("roc_auc").is_not_null() | pl.col("is_best")
    ).height
    unknown = model_metrics.filter(~pl.col("status").is_in([models.OK, models.INSUFFICIENT])).height
    return dg.AssetCheckResult(
        passed=bad == 0 and outside == 0 and one_best and unexplained == 0 and unknown == 0,
        metadata={
            "non_finite_rows": bad,
            "points_outside_their_interval": outside,
            "one_model_in_service_per_task": one_best,
            "insufficient_rows_without_note": unexplained,
            "unknown_status_rows": unknown,
            "tasks_insufficient": ", ".join(sorted(set(insufficient["task"].to_list()))) or "none",
        },
    )
