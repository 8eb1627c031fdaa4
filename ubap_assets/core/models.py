"""Conversion and bounce models with three disjoint time windows: train, validate, test.

Dagster-free. Each task is fit on features at the training cutoff with the labels of the
window after it; the model family, its hyper-parameters and the decision threshold (F1) are
chosen on the validation window; the chosen models are reported on the test window, the
latest, which chose nothing. Every reported metric carries n, the positives and a bootstrap
95% interval (core/model_evaluation.py). A task whose windows hold fewer than 50 positives (or
negatives) is "insufficient data": nothing is fit, nothing is served, the numbers say why.
"""

import json
from dataclasses import dataclass, field, replace
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    roc_auc_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from ubap_assets.core import cadence
from ubap_assets.core import model_evaluation as ev
from ubap_assets.core.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    SPLITS,
    FeatureWindowError,
    TimePlan,
    bounce_label_name,
    bounce_labels,
    compute_features,
    conversion_label_name,
    conversion_labels,
    daily_span,
    plan_windows,
)
from ubap_assets.core.sampling import sample_mask
from ubap_assets.lib.blocks import map_blocks

MODEL_NAMES: tuple[str, ...] = ("logistic_regression", "random_forest", "xgboost")
# The hyper-parameters tried per family; the validation window picks one (by PR-AUC).
CANDIDATES: dict[str, tuple[dict[str, float], ...]] = {
    "logistic_regression": ({"C": 0.1}, {"C": 1.0}),
    "random_forest": ({"min_samples_leaf": 10}, {"min_samples_leaf": 40}),
    "xgboost": ({"max_depth": 3}, {"max_depth": 5}),
}
CEILING = "true_propensity"
TASKS: tuple[str, ...] = ("conversion", "bounce")
OK = "ok"
INSUFFICIENT = "insufficient data"
VALIDATION, TEST = "validation", "test"
LABEL_NAMES = {"conversion": conversion_label_name, "bounce": bounce_label_name}
# model_metrics, one row per (task, model, split): who, where, the sample, then each metric
# with its interval, then the run's windows.
METRIC_COLUMNS: tuple[str, ...] = tuple(
    c for m in ev.METRICS for c in (m, f"{m}_ci_low", f"{m}_ci_high")
)
SCORE_COLUMNS: tuple[str, ...] = (
    "task",
    "label",
    "model",
    "split",
    "status",
    "note",
    "n",
    "positives",
    "positive_rate",
    *METRIC_COLUMNS,
    "threshold",
    "auc_vs_ceiling",
    "is_best",
    "params_json",
)
RUN_COLUMNS: tuple[str, ...] = (
    "n_train",
    "positives_train",
    "train_cutoff",
    "valid_cutoff",
    "test_cutoff",
    "horizon_days",
)
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "task": pl.String,
    "label": pl.String,
    "model": pl.String,
    "split": pl.String,
    "status": pl.String,
    "note": pl.String,
    "n": pl.Int64,
    "positives": pl.Int64,
    "positive_rate": pl.Float64,
    **{c: pl.Float64 for c in METRIC_COLUMNS},
    "threshold": pl.Float64,
    "auc_vs_ceiling": pl.Float64,
    "is_best": pl.Boolean,
    "params_json": pl.String,
    "n_train": pl.Int64,
    "positives_train": pl.Int64,
    "train_cutoff": pl.Datetime("us"),
    "valid_cutoff": pl.Datetime("us"),
    "test_cutoff": pl.Datetime("us"),
    "horizon_days": pl.Int32,
}
# A single feature that separates the labels this well (the interval's lower end) means the
# label leaked into it.
LEAKAGE_AUC = 0.99
# How a task's reasons are computed, per model family (named in model_cards and the API).
REASON_METHODS: dict[str, str] = {
    "logistic_regression": "logistic coefficients x standardized log1p value (log-odds)",
    "random_forest": "random forest path contributions (Saabas decomposition)",
    "xgboost": "XGBoost pred_contribs (Saabas approximation of SHAP values, log-odds)",
}


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


def make_model(
    family: str,
    params: dict[str, float] | None = None,
    *,
    seed: int = 0,
    n_jobs: int = 2,
    threads: int = 1,
    n_rows: int = 0,
) -> object:
    """One candidate: small enough to train in seconds on tens of thousands of users; each
    forest tree sees at most 25k rows (half the rows below 50k)."""
    params = dict(params or {})
    if family == "logistic_regression":
        return make_pipeline(
            FunctionTransformer(log1p_nonneg),
            StandardScaler(),
            LogisticRegression(max_iter=2000, C=params.get("C", 1.0)),
        )
    if family == "random_forest":
        return RandomForestClassifier(
            n_estimators=100,
            max_depth=10,
            min_samples_leaf=int(params.get("min_samples_leaf", 20)),
            max_samples=min(0.5, 25_000 / n_rows) if n_rows else 0.5,
            n_jobs=n_jobs,
            random_state=seed,
        )
    if family == "xgboost":
        return XGBClassifier(
            n_estimators=250,
            max_depth=int(params.get("max_depth", 4)),
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
        )
    raise ValueError(f"unknown model family {family!r}: use one of {', '.join(MODEL_NAMES)}")


@dataclass(frozen=True)
class LeakageProbe:
    """The feature that alone best separates the training labels, its direction-free ROC-AUC,
    the lower end of that AUC's bootstrap 95% interval, and the sample it was measured on."""

    feature: str
    auc: float
    ci_low: float
    positives: int = 0
    negatives: int = 0

    @property
    def leaked(self) -> bool:
        """A leak needs evidence: enough of each class and an interval above the limit (on
        a few users a feature can separate the labels by chance, and the bootstrap of a
        perfect separation is perfect too)."""
        enough = min(self.positives, self.negatives) >= ev.MIN_CLASS_COUNT
        return enough and self.ci_low >= LEAKAGE_AUC


def max_single_feature_auc(frame: pl.DataFrame, design: Design, seed: int = 0) -> LeakageProbe:
    x = design.matrix(frame)
    y = frame["label"].cast(pl.Int8).to_numpy()
    best, name, column = 0.5, "", None
    for j, feature in enumerate(design.names):
        if np.ptp(x[:, j]) == 0:
            continue
        auc = roc_auc_score(y, x[:, j])
        if max(auc, 1 - auc) > best:
            best, name = float(max(auc, 1 - auc)), feature
            column = x[:, j] if auc >= 0.5 else -x[:, j]
    n, positives = ev.class_counts(y)
    if column is None:
        return LeakageProbe("", 0.5, 0.5, positives, n - positives)
    # dense ranks scaled into (0, 1) keep the order (the AUC) and suit the bootstrap's cells
    _, values = np.unique(column, return_inverse=True)
    scaled = (values + 0.5) / (values.max() + 1)
    low, _ = ev.bootstrap_intervals(y, scaled, 0.5, seed=seed)["roc_auc"]
    return LeakageProbe(name, best, float(low), positives, n - positives)


def check_windows(plan: TimePlan) -> None:
    """The three label windows are disjoint and in time order, and end with the training data."""
    train_end = plan.label_window("train")[1]
    valid_end = plan.label_window("validation")[1]
    test_end = plan.label_window("test")[1]
    if not (
        plan.first_day <= plan.train_cutoff < train_end <= plan.valid_cutoff < valid_end
        and valid_end <= plan.test_cutoff < test_end <= plan.end
    ):
        raise LeakageError(
            f"label windows overlap or are out of order: train [{plan.train_cutoff}, "
            f"{train_end}), validation [{plan.valid_cutoff}, {valid_end}), test "
            f"[{plan.test_cutoff}, {test_end}), training data end {plan.end}"
        )


def window_text(plan: TimePlan, split: str) -> str:
    start, end = plan.label_window(split)
    return f"{split} window [{start:%Y-%m-%d}, {end:%Y-%m-%d})"


@dataclass
class TaskResult:
    task: str
    label: str  # the label in words, e.g. "purchase within 14 days"
    status: str  # OK or INSUFFICIENT
    note: str  # why a task is insufficient; how the horizon was chosen
    design: "Design | None"
    models: dict[str, object]  # family -> the candidate chosen on validation
    params: dict[str, dict]  # family -> its hyper-parameters
    candidates: list[dict]  # every candidate tried, with its validation PR-AUC
    metrics: pl.DataFrame  # METRICS_SCHEMA: per (model, split)
    curves: pl.DataFrame  # ROC and PR on the test window
    best: str | None  # the family in service (None when insufficient)
    sizes: dict[str, tuple[int, int]]  # split -> (users, positives)
    leakage: LeakageProbe | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    populations: dict[str, int] = field(default_factory=dict)  # split -> users before sampling

    def window_users_text(self) -> str:
        """Users per window, and of how many each was sampled (train_all's cap)."""
        parts = []
        for split, (users, _) in self.sizes.items():
            population = self.populations.get(split, users)
            sampled = f" (a sample of {population:,})" if population > users else ""
            parts.append(f"{split} {users:,}{sampled}")
        return ", ".join(parts)

    @property
    def served(self) -> bool:
        return self.status == OK and self.best is not None

    def threshold(self, model: str | None = None) -> float:
        return self.thresholds[model or self.best]


def _metric_row(task: str, label: str, model: str | None, split: str, **values) -> dict:
    row = {c: None for c in METRICS_SCHEMA}
    row.update(task=task, label=label, model=model, split=split, is_best=False)
    row.update(values)
    return row


def _finish(rows: list[dict], plan: TimePlan, sizes: dict[str, tuple[int, int]]) -> pl.DataFrame:
    n_train, positives_train = sizes["train"]
    for row in rows:
        row.update(
            n_train=n_train,
            positives_train=positives_train,
            train_cutoff=plan.train_cutoff,
            valid_cutoff=plan.valid_cutoff,
            test_cutoff=plan.test_cutoff,
            horizon_days=plan.horizon_days,
        )
    frame = pl.DataFrame(rows, schema=METRICS_SCHEMA)
    # no NaN in a published table: an undefined interval end is null
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def train_task(
    task: str,
    train: pl.DataFrame,
    valid: pl.DataFrame,
    test: pl.DataFrame,
    plan: TimePlan,
    *,
    threads: int = 1,
    **kwargs,
) -> TaskResult:
    """Fit, choose and test the models of ``task`` (see ``_train_task``); ``threads`` caps
    BLAS/OpenMP threads, which spin-wait and slow down on a busy machine."""
    with threadpool_limits(limits=threads):
        return _train_task(task, train, valid, test, plan, threads=threads, **kwargs)


def _train_task(
    task: str,
    train: pl.DataFrame,
    valid: pl.DataFrame,
    test: pl.DataFrame,
    plan: TimePlan,
    *,
    seed: int = 0,
    n_jobs: int = 2,
    ceiling: pl.DataFrame | None = None,
    threads: int = 1,
    min_class_count: int = ev.MIN_CLASS_COUNT,
    sample_note: str = "",
) -> TaskResult:
    """Fit every candidate on ``train``, choose per family (hyper-parameters) and across
    families (the model in service) by validation PR-AUC, set each family's threshold to the
    F1-optimum on ``valid``, and score the chosen models on ``test``.

    ``ceiling``: optional frame (user_id, score) of ground-truth probabilities; its ROC-AUC on
    the same users is the best any model could reach. ``sample_note``: how the windows were
    sampled (train_all), added to every metric row's note.
    """
    check_windows(plan)
    label = LABEL_NAMES[task](plan.horizon_days)
    frames = {"train": train, VALIDATION: valid, TEST: test}
    ys = {split: f["label"].cast(pl.Int8).to_numpy() for split, f in frames.items()}
    sizes = {split: ev.class_counts(y) for split, y in ys.items()}
    short = [
        text
        for split, y in ys.items()
        if (text := ev.shortfall(window_text(plan, split), y, min_class_count))
    ]
    if short:
        note = f"{task}: insufficient data: " + "; ".join([*short, *filter(None, [sample_note])])
        rows = [
            _metric_row(
                task,
                label,
                None,
                split,
                status=INSUFFICIENT,
                note=note,
                n=sizes[split][0],
                positives=sizes[split][1],
                positive_rate=sizes[split][1] / sizes[split][0] if sizes[split][0] else None,
            )
            for split in (VALIDATION, TEST)
        ]
        return TaskResult(
            task,
            label,
            INSUFFICIENT,
            note,
            None,
            {},
            {},
            [],
            _finish(rows, plan, sizes),
            pl.DataFrame(schema=ev.CURVES_SCHEMA),
            None,
            sizes,
        )

    design = Design.fit(train)
    probe = max_single_feature_auc(train, design, seed)
    if probe.leaked:
        raise LeakageError(
            f"{task}: feature {probe.feature!r} alone separates the training labels "
            f"(ROC-AUC {probe.auc:.3f}, 95% interval from {probe.ci_low:.3f}); the label is "
            "derivable from the features"
        )
    x = {split: design.matrix(f) for split, f in frames.items()}
    chosen, params, candidates, valid_scores = {}, {}, [], {}
    for family in MODEL_NAMES:
        for candidate in CANDIDATES[family]:
            model = make_model(
                family,
                candidate,
                seed=seed,
                n_jobs=n_jobs,
                threads=threads,
                n_rows=len(ys["train"]),
            )
            model.fit(x["train"], ys["train"])
            p = model.predict_proba(x[VALIDATION])[:, 1]
            score = float(average_precision_score(ys[VALIDATION], p))
            candidates.append({"model": family, "params": candidate, "validation_pr_auc": score})
            if family not in chosen or score > valid_scores[family][0]:
                chosen[family], params[family], valid_scores[family] = model, candidate, (score, p)
    best = max(MODEL_NAMES, key=lambda family: valid_scores[family][0])
    note = "; ".join(text for text in (plan.horizon_note, sample_note) if text) or None
    rows, curves, thresholds = [], [], {}
    for family in MODEL_NAMES:
        p_valid = valid_scores[family][1]
        threshold = ev.f1_threshold(ys[VALIDATION], p_valid)
        thresholds[family] = threshold
        p_test = chosen[family].predict_proba(x[TEST])[:, 1]
        for split, y, p in ((VALIDATION, ys[VALIDATION], p_valid), (TEST, ys[TEST], p_test)):
            rows.append(
                _metric_row(
                    task,
                    label,
                    family,
                    split,
                    status=OK,
                    note=note,
                    is_best=family == best,
                    params_json=json.dumps(params[family]),
                    **ev.evaluate(y, p, threshold, seed=seed),
                )
            )
        curves.append(ev.curve_points(task, family, ys[TEST], p_test))
    if ceiling is not None and not ceiling.is_empty():
        rows, curves = _with_ceiling(task, label, rows, curves, frames, ceiling, seed, note)
    return TaskResult(
        task,
        label,
        OK,
        note or "",
        design,
        chosen,
        params,
        candidates,
        _finish(rows, plan, sizes),
        pl.concat(curves),
        best,
        sizes,
        probe,
        thresholds,
    )


def _with_ceiling(task, label, rows, curves, frames, ceiling, seed, note):
    """Add the ground truth's rows (threshold from validation) and auc_vs_ceiling per split;
    unchanged when the ceiling does not cover every user of both windows."""
    scored = {}
    for split in (VALIDATION, TEST):
        frame = frames[split].select("user_id", "label").join(ceiling, on="user_id", how="inner")
        if frame.height != frames[split].height:
            return rows, curves
        scored[split] = (
            frame["label"].cast(pl.Int8).to_numpy(),
            frame["score"].cast(pl.Float64).to_numpy(),
        )
    threshold = ev.f1_threshold(*scored[VALIDATION])
    ceiling_auc = {}
    for split, (y, p) in scored.items():
        row = ev.evaluate(y, p, threshold, seed=seed)
        ceiling_auc[split] = row["roc_auc"]
        rows.append(_metric_row(task, label, CEILING, split, status=OK, note=note, **row))
    for row in rows:
        row["auc_vs_ceiling"] = row["roc_auc"] / ceiling_auc[row["split"]]
    curves.append(ev.curve_points(task, CEILING, *scored[TEST]))
    return rows, curves


def predict(model: object, design: Design, frame: pl.DataFrame) -> np.ndarray:
    return model.predict_proba(design.matrix(frame))[:, 1]


LABELLERS = {"conversion": conversion_labels, "bounce": bounce_labels}
# Most users each window (train, validation, test) keeps for a model; a larger window is cut
# to a deterministic sample (sample_users). Fitting cost grows with the rows, the models'
# quality barely beyond this; a window this size still gives tight intervals.
MAX_USERS_PER_WINDOW = 200_000


def sample_users(frame: pl.DataFrame, max_users: int, seed: int = 0) -> pl.DataFrame:
    """``frame`` when it has at most ``max_users`` rows (or ``max_users`` is 0); otherwise the
    ``max_users`` users with the smallest keyed BLAKE2 hash of their id, in ``frame``'s order.

    Deterministic (the same users for the same ids and seed on every run and machine) and
    consistent across windows: a user sampled in one window is sampled in every window where
    the ranks allow."""
    if max_users <= 0 or frame.height <= max_users:
        return frame
    keep = sample_mask(frame["user_id"].to_list(), max_users, seed)
    return frame.filter(pl.Series(keep))


def sampling_note(populations: dict[str, int], sampled: dict[str, int], max_users: int) -> str:
    """Says which windows were cut to a sample, with both sizes ('' when none was)."""
    cut = [
        f"{split} {sampled[split]:,} of {populations[split]:,}"
        for split in populations
        if sampled[split] < populations[split]
    ]
    if not cut:
        return ""
    return (
        f"a deterministic sample of users per window (more than {max_users:,}): "
        + ", ".join(cut)
        + "; n and the intervals are those of the sample"
    )


CutoffFeatures = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


def training_plan(
    con: duckdb.DuckDBPyConnection,
    every_days: int,
    horizon_days: int = 0,
    lookback_days: int = 0,
) -> tuple[TimePlan, datetime]:
    """The windows of a training run and the data end: the training data end at the latest
    training boundary at or before the data end (core/cadence.py), so every run between two
    boundaries plans, and trains, the same. Reads only ``user_daily``'s span."""
    first, data_end = daily_span(con)
    boundary = cadence.training_end(data_end, every_days)
    try:
        plan = plan_windows(first, boundary, horizon_days, lookback_days)
    except FeatureWindowError as err:
        raise FeatureWindowError(
            f"{err} (the training data end at the boundary {boundary:%Y-%m-%d}, the start of "
            f"the current {every_days}-day training period; the data end {data_end:%Y-%m-%d})"
        ) from err
    return replace(plan, retrain_every_days=every_days), data_end


def cutoff_features(con: duckdb.DuckDBPyConnection, plan: TimePlan) -> CutoffFeatures:
    """Features at the training, validation and test cutoffs (shared by every task)."""
    return tuple(
        compute_features(con, plan.cutoff(split), plan.lookback_days)
        for split in ("train", VALIDATION, TEST)
    )


def training_data(
    con: duckdb.DuckDBPyConnection,
    plan: TimePlan,
    task: str,
    features: CutoffFeatures | None = None,
) -> CutoffFeatures:
    """Features at each cutoff joined to the labels of the window right after it."""
    label = LABELLERS[task]
    frames = features if features is not None else cutoff_features(con, plan)
    return tuple(
        label(con, frame, plan.cutoff(split), plan.horizon_days)
        for frame, split in zip(frames, ("train", VALIDATION, TEST), strict=True)
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
    min_class_count: int = ev.MIN_CLASS_COUNT,
    max_users: int = MAX_USERS_PER_WINDOW,
) -> dict[str, TaskResult]:
    """Train, choose and test every task; the conversion ceiling comes from ``personas``.
    A task with too few labels is returned as insufficient; the others still train. A window
    with more than ``max_users`` users (0: no cap) keeps a deterministic sample of them
    (sample_users); the metrics' note says so and their n is the sample's."""
    ceiling = None
    if personas is not None and not personas.is_empty():
        ceiling = personas.select("user_id", score=pl.col("purchase_propensity_14d"))
    features = cutoff_features(con, plan)
    windows = {task: training_data(con, plan, task, features) for task in tasks}

    def train_one(task: str) -> TaskResult:
        frames = windows[task]
        populations = dict(zip(SPLITS, (f.height for f in frames), strict=True))
        train, valid, test = (sample_users(f, max_users, seed) for f in frames)
        sampled = {"train": train.height, VALIDATION: valid.height, TEST: test.height}
        result = train_task(
            task,
            train,
            valid,
            test,
            plan,
            sample_note=sampling_note(populations, sampled, max_users),
            seed=seed,
            n_jobs=n_jobs,
            threads=threads,
            ceiling=ceiling if task == "conversion" else None,
            min_class_count=min_class_count,
        )
        result.populations = populations
        return result

    # The tasks train at once, each in its own thread (seeded: the same models as in turn);
    # the threads' limit is held here, so neither task's own limit lifts it for the other.
    with threadpool_limits(limits=threads):
        return dict(zip(tasks, map_blocks(train_one, list(tasks)), strict=True))
