"""Conversion and bounce models with an honest, time-based split.

Dagster-free. Each task is trained on features at the training cutoff with labels from the
window after it, and scored on features at the (later) validation cutoff with labels from the
window after that. Three model families per task; the best by PR-AUC is the one used.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from ubap_assets.core.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    TimePlan,
    bounce_labels,
    compute_features,
    conversion_labels,
)

MODEL_NAMES: tuple[str, ...] = ("logistic_regression", "random_forest", "xgboost")
CEILING = "true_propensity"
TASKS: tuple[str, ...] = ("conversion", "bounce")
# model_metrics, one row per (task, model): the scores a person compares, then the run's sizes
# and windows (the same on every row of a task).
SCORE_COLUMNS: tuple[str, ...] = (
    "task",
    "model",
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "threshold",
    "f1",
    "precision",
    "recall",
    "auc_vs_ceiling",
    "is_best",
)
RUN_COLUMNS: tuple[str, ...] = (
    "n_train",
    "n_valid",
    "valid_positive_rate",
    "train_cutoff",
    "valid_cutoff",
    "horizon_days",
)
CURVE_POINTS = 101
# A single feature that separates the labels this well means the label leaked into it.
LEAKAGE_AUC = 0.99


class LabelError(ValueError):
    """The labels cannot train or evaluate a classifier (one class only, too few rows)."""


class LeakageError(ValueError):
    """A guard against information from the label period reaching the features failed."""


def log1p_nonneg(x: np.ndarray) -> np.ndarray:
    """Module-level (picklable) transform for the logistic regression."""
    return np.log1p(np.clip(x, 0.0, None))


@dataclass
class Design:
    """How a feature frame becomes a model matrix: numeric columns, then one-hot categories."""

    numeric: list[str]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pl.DataFrame) -> "Design":
        cats = {
            c: sorted(frame[c].drop_nulls().unique().to_list())
            for c in CATEGORICAL_FEATURES
            if c in frame.columns
        }
        return cls([c for c in NUMERIC_FEATURES if c in frame.columns], cats)

    @property
    def names(self) -> list[str]:
        return self.numeric + [f"{c}={v}" for c, vals in self.categories.items() for v in vals]

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        exprs = [pl.col(c).cast(pl.Float64).fill_null(0.0) for c in self.numeric]
        exprs += [
            (pl.col(c) == v).fill_null(False).cast(pl.Float64).alias(f"{c}={v}")
            for c, vals in self.categories.items()
            for v in vals
        ]
        return frame.select(exprs).to_numpy().astype(np.float64)

    def as_dict(self) -> dict:
        return {"numeric": self.numeric, "categories": self.categories}


def make_models(
    seed: int = 0, n_jobs: int = 2, threads: int = 1, n_rows: int = 0
) -> dict[str, object]:
    """Small enough to train in seconds on tens of thousands of users; each forest tree sees at
    most 25k rows (half the rows below 50k), so 100k users still train in seconds."""
    max_samples = min(0.5, 25_000 / n_rows) if n_rows else 0.5
    return {
        "logistic_regression": make_pipeline(
            FunctionTransformer(log1p_nonneg),
            StandardScaler(),
            LogisticRegression(max_iter=2000, C=1.0),
        ),
        "random_forest": RandomForestClassifier(
            n_estimators=100,
            max_depth=10,
            min_samples_leaf=20,
            max_samples=max_samples,
            n_jobs=n_jobs,
            random_state=seed,
        ),
        "xgboost": XGBClassifier(
            n_estimators=250,
            max_depth=4,
            learning_rate=0.06,
            subsample=0.8,
            colsample_bytree=0.8,
            min_child_weight=5,
            tree_method="hist",
            # One thread by default: on a busy 2-core machine OpenMP spin-waits made 2 threads
            # 50x slower than 1.
            eval_metric="logloss",
            n_jobs=threads,
            random_state=seed,
        ),
    }


def check_labels(task: str, split: str, y: np.ndarray, cutoff: datetime) -> None:
    positives = int(y.sum())
    if len(y) == 0:
        raise LabelError(
            f"{task}: no labelled users at the {split} cutoff {cutoff:%Y-%m-%d}; "
            "the window after the cutoff has no events - load more days of events"
        )
    if positives == 0 or positives == len(y):
        only = "positive" if positives else "negative"
        raise LabelError(
            f"{task}: single class in the {split} labels ({len(y)} users, all {only}) after the "
            f"cutoff {cutoff:%Y-%m-%d}; a classifier needs both classes - use more users or a "
            "longer horizon_days"
        )


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Ranking and calibration metrics, and the F1-optimal threshold."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0.0
    )[:-1]
    best = int(np.argmax(f1)) if len(f1) else 0
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "threshold": float(thresholds[best]) if len(thresholds) else 0.5,
        "f1": float(f1[best]) if len(f1) else 0.0,
        "precision": float(precision[best]),
        "recall": float(recall[best]),
    }


def curve_points(task: str, model: str, y: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """ROC and PR curves, each thinned to at most CURVE_POINTS points."""
    fpr, tpr, roc_t = roc_curve(y, p)
    precision, recall, pr_t = precision_recall_curve(y, p)
    pr_t = np.append(pr_t, 1.0)  # the last PR point has no threshold
    frames = []
    for curve, x, yy, t in (("roc", fpr, tpr, roc_t), ("pr", recall, precision, pr_t)):
        idx = np.unique(np.linspace(0, len(x) - 1, min(CURVE_POINTS, len(x))).astype(int))
        frames.append(
            pl.DataFrame(
                {
                    "task": task,
                    "model": model,
                    "curve": curve,
                    "point": np.arange(len(idx), dtype=np.int64),
                    "x": x[idx].astype(float),
                    "y": yy[idx].astype(float),
                    "threshold": np.clip(np.nan_to_num(t[idx].astype(float), posinf=1.0), 0.0, 1.0),
                }
            )
        )
    return pl.concat(frames)


def max_single_feature_auc(frame: pl.DataFrame, design: Design) -> tuple[str, float]:
    """The feature that alone best separates the labels, and its (direction-free) ROC-AUC."""
    x = design.matrix(frame)
    y = frame["label"].cast(pl.Int8).to_numpy()
    best, name = 0.5, ""
    for j, feature in enumerate(design.names):
        if np.ptp(x[:, j]) == 0:
            continue
        auc = roc_auc_score(y, x[:, j])
        auc = max(auc, 1 - auc)
        if auc > best:
            best, name = float(auc), feature
    return name, best


def check_windows(plan: TimePlan) -> None:
    """Training and validation label windows must not overlap; features precede labels."""
    train_label_end = plan.valid_cutoff
    if not plan.train_cutoff < train_label_end <= plan.valid_cutoff < plan.end:
        raise LeakageError(
            f"windows overlap: train labels [{plan.train_cutoff}, {train_label_end}), "
            f"validation labels [{plan.valid_cutoff}, {plan.end})"
        )
    if (plan.valid_cutoff - plan.train_cutoff).days < plan.horizon_days:
        raise LeakageError("the training label window runs into the validation label window")


@dataclass
class TaskResult:
    task: str
    design: Design
    models: dict[str, object]
    metrics: pl.DataFrame  # one row per model (+ the ceiling for conversion)
    curves: pl.DataFrame
    best: str
    n_train: int
    n_valid: int
    leakage: dict[str, float | str] = field(default_factory=dict)

    def threshold(self, model: str | None = None) -> float:
        row = self.metrics.filter(pl.col("model") == (model or self.best))
        return float(row["threshold"][0])


def train_task(
    task: str,
    train: pl.DataFrame,
    valid: pl.DataFrame,
    plan: TimePlan,
    *,
    threads: int = 1,
    **kwargs,
) -> TaskResult:
    """Fit and validate the three models of ``task`` (see ``_train_task``); ``threads`` caps
    BLAS/OpenMP threads, which spin-wait and slow down on a busy machine."""
    with threadpool_limits(limits=threads):
        return _train_task(task, train, valid, plan, threads=threads, **kwargs)


def _train_task(
    task: str,
    train: pl.DataFrame,
    valid: pl.DataFrame,
    plan: TimePlan,
    *,
    seed: int = 0,
    n_jobs: int = 2,
    ceiling: pl.DataFrame | None = None,
    threads: int = 1,
) -> TaskResult:
    """Fit the three models on ``train``, score them on ``valid`` (both carry ``label``).

    ``ceiling``: optional frame (user_id, score) of ground-truth probabilities; its ROC-AUC on
    the validation users is the best any model could reach.
    """
    check_windows(plan)
    y_train = train["label"].cast(pl.Int8).to_numpy()
    y_valid = valid["label"].cast(pl.Int8).to_numpy()
    check_labels(task, "training", y_train, plan.train_cutoff)
    check_labels(task, "validation", y_valid, plan.valid_cutoff)
    design = Design.fit(train)
    leak_feature, leak_auc = max_single_feature_auc(train, design)
    if leak_auc >= LEAKAGE_AUC:
        raise LeakageError(
            f"{task}: feature {leak_feature!r} alone separates the training labels "
            f"(ROC-AUC {leak_auc:.3f}); the label is derivable from the features"
        )
    x_train, x_valid = design.matrix(train), design.matrix(valid)
    models = make_models(seed, n_jobs, threads, n_rows=len(y_train))
    rows, curves = [], []
    for name, model in models.items():
        model.fit(x_train, y_train)
        p = model.predict_proba(x_valid)[:, 1]
        rows.append({"model": name, **evaluate(y_valid, p)})
        curves.append(curve_points(task, name, y_valid, p))
    ceiling_auc = None
    if ceiling is not None and not ceiling.is_empty():
        scored = valid.select("user_id", "label").join(ceiling, on="user_id", how="inner")
        if scored.height == valid.height:
            yc = scored["label"].cast(pl.Int8).to_numpy()
            pc = scored["score"].cast(pl.Float64).to_numpy()
            rows.append({"model": CEILING, **evaluate(yc, pc)})
            curves.append(curve_points(task, CEILING, yc, pc))
            ceiling_auc = rows[-1]["roc_auc"]
    metrics = pl.DataFrame(rows)
    best = metrics.filter(pl.col("model") != CEILING).sort("pr_auc", descending=True)["model"][0]
    metrics = metrics.with_columns(
        task=pl.lit(task),
        auc_vs_ceiling=(pl.col("roc_auc") / ceiling_auc)
        if ceiling_auc
        else pl.lit(None, pl.Float64),
        is_best=pl.col("model") == best,
        n_train=pl.lit(len(y_train), pl.Int64),
        n_valid=pl.lit(len(y_valid), pl.Int64),
        valid_positive_rate=pl.lit(float(y_valid.mean())),
        train_cutoff=pl.lit(plan.train_cutoff),
        valid_cutoff=pl.lit(plan.valid_cutoff),
        horizon_days=pl.lit(plan.horizon_days, pl.Int32),
    ).select(*SCORE_COLUMNS, *RUN_COLUMNS)
    return TaskResult(
        task,
        design,
        models,
        metrics,
        pl.concat(curves),
        best,
        len(y_train),
        len(y_valid),
        {"max_single_feature_auc": leak_auc, "feature": leak_feature},
    )


def predict(model: object, design: Design, frame: pl.DataFrame) -> np.ndarray:
    return model.predict_proba(design.matrix(frame))[:, 1]


LABELLERS = {"conversion": conversion_labels, "bounce": bounce_labels}


def cutoff_features(
    con: duckdb.DuckDBPyConnection, plan: TimePlan
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features at the training and at the validation cutoff (shared by every task)."""
    return (
        compute_features(con, plan.train_cutoff, plan.lookback_days),
        compute_features(con, plan.valid_cutoff, plan.lookback_days),
    )


def training_data(
    con: duckdb.DuckDBPyConnection,
    plan: TimePlan,
    task: str,
    features: tuple[pl.DataFrame, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features at each cutoff joined to the labels of the window right after it."""
    label = LABELLERS[task]
    train, valid = features if features is not None else cutoff_features(con, plan)
    return (
        label(con, train, plan.train_cutoff, plan.horizon_days),
        label(con, valid, plan.valid_cutoff, plan.horizon_days),
    )


def train_all(
    con: duckdb.DuckDBPyConnection,
    plan: TimePlan,
    *,
    personas: pl.DataFrame | None = None,
    seed: int = 0,
    n_jobs: int = 2,
    threads: int = 1,
    tasks: tuple[str, ...] = TASKS,
) -> dict[str, TaskResult]:
    """Train and validate every task; the conversion ceiling comes from ``personas``."""
    ceiling = None
    if personas is not None and not personas.is_empty():
        ceiling = personas.select("user_id", score=pl.col("purchase_propensity_14d"))
    results = {}
    features = cutoff_features(con, plan)
    for task in tasks:
        train, valid = training_data(con, plan, task, features)
        results[task] = train_task(
            task,
            train,
            valid,
            plan,
            seed=seed,
            n_jobs=n_jobs,
            threads=threads,
            ceiling=ceiling if task == "conversion" else None,
        )
    return results


def model_cards_frame(
    results: dict[str, TaskResult],
    plan: TimePlan,
    version: str,
    paths: dict[tuple[str, str], str],
    created_at: datetime,
) -> pl.DataFrame:
    """One row per (task, model) fitted in the run."""
    rows = []
    for task, result in results.items():
        for metrics in result.metrics.filter(pl.col("model") != CEILING).iter_rows(named=True):
            model = metrics["model"]
            keep = (
                "roc_auc",
                "pr_auc",
                "brier",
                "log_loss",
                "f1",
                "precision",
                "recall",
                "auc_vs_ceiling",
            )
            rows.append(
                {
                    "model_version": version,
                    "task": task,
                    "model": model,
                    "is_best": model == result.best,
                    "features_json": json.dumps(result.design.names),
                    "train_cutoff": plan.train_cutoff,
                    "valid_cutoff": plan.valid_cutoff,
                    "label_window_train_end": plan.valid_cutoff,
                    "label_window_valid_end": plan.end,
                    "horizon_days": plan.horizon_days,
                    "lookback_days": plan.lookback_days,
                    "n_train": result.n_train,
                    "n_valid": result.n_valid,
                    "metrics_json": json.dumps({k: metrics[k] for k in keep}),
                    "threshold": metrics["threshold"],
                    "max_single_feature_auc": float(result.leakage["max_single_feature_auc"]),
                    "leakiest_feature": str(result.leakage["feature"]),
                    "artifact_path": paths.get((task, model), ""),
                    "created_at": created_at,
                }
            )
    return pl.DataFrame(rows).with_columns(
        pl.col("horizon_days", "lookback_days").cast(pl.Int32),
        pl.col("n_train", "n_valid").cast(pl.Int64),
    )
