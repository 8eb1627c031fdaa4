"""Plain-word reasons for a prediction, from the contributions of the model that scored it.

Dagster-free. Each task's reasons come from its own model in service: for each user the three
features with the largest absolute contribution are phrased as "<what the user did> (raises /
lowers the <outcome>)". The contribution method depends on the model family
(``core.models.REASON_METHODS``): XGBoost's ``pred_contribs``, the forest's path contributions
(Saabas: each split's change of the leaf-to-root mean, credited to its feature), or a logistic
regression's coefficient times the standardized (log1p) value.
"""

import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from ubap_assets.core.models import Design

# The outcome each task's reasons speak of.
OUTCOMES: dict[str, str] = {
    "conversion": "purchase chance",
    "bounce": "chance that the next visit bounces",
}

_PHRASES: dict[str, str] = {
    "recency_days": "last visit {v:.0f} days ago",
    "active_days": "active on {v:.0f} days",
    "sessions": "{v:.0f} visit(s)",
    "sessions_last_7d": "{v:.0f} visit(s) in the last 7 days",
    "events": "{v:.0f} interactions",
    "page_views": "{v:.0f} pages viewed",
    "pages_per_session": "{v:.1f} pages per visit",
    "avg_session_minutes": "visits last {v:.1f} minutes on average",
    "bounce_rate": "{v:.0%} of visits were single-page bounces",
    "product_share": "{v:.0%} of pages viewed were products",
    "blog_share": "{v:.0%} of pages viewed were blog posts",
    "help_share": "{v:.0%} of pages viewed were help pages",
    "searches": "{v:.0f} search(es)",
    "add_to_cart": "added {v:.0f} item(s) to the cart",
    "add_to_cart_rate": "{v:.2f} cart additions per visit",
    "checkout_starts": "started {v:.0f} checkout(s)",
    "purchases": "{v:.0f} past purchase(s)",
    "purchase_rate": "{v:.2f} purchases per visit",
    "revenue": "spent {v:,.0f} so far",
    "days_since_signup": "signed up {v:.0f} days ago",
}


def _what(feature: str, value: float) -> str:
    if "=" in feature:
        column, level = feature.split("=", 1)
        what = column.replace("_", " ")
        return f"{what} is {level}" if value >= 0.5 else f"{what} is not {level}"
    return _PHRASES.get(feature, feature.replace("_", " ") + " = {v:.2f}").format(v=value)


def _direction(contribution: float, outcome: str) -> str:
    return f" ({'raises' if contribution > 0 else 'lowers'} the {outcome})"


def phrase(feature: str, value: float, contribution: float, outcome: str) -> str:
    """One reason in plain words."""
    return _what(feature, value) + _direction(contribution, outcome)


def _phrases(feature: str, values: np.ndarray, contribs: np.ndarray, outcome: str) -> np.ndarray:
    """``phrase`` for many rows of one feature, each distinct value worded once."""
    distinct, inverse = np.unique(values, return_inverse=True)
    what = np.array([_what(feature, v) for v in distinct], dtype=object)[inverse]
    return np.where(contribs > 0, what + _direction(1.0, outcome), what + _direction(-1.0, outcome))


def contributions(model: object, x: np.ndarray) -> np.ndarray:
    """Per-row, per-feature contributions of any fitted family of core.models."""
    if isinstance(model, xgb.XGBClassifier):
        return xgboost_contributions(model, x)
    if isinstance(model, RandomForestClassifier):
        return forest_contributions(model, x)
    if isinstance(model, Pipeline):
        return logistic_contributions(model, x)
    raise TypeError(f"no contribution method for {type(model).__name__}")


def logistic_contributions(pipeline: Pipeline, x: np.ndarray) -> np.ndarray:
    """coefficient x standardized value: each feature's share of the log-odds relative to
    the average training user (log1p, then StandardScaler, then LogisticRegression)."""
    *transforms, (_, logistic) = pipeline.steps
    z = x
    for _, step in transforms:
        z = step.transform(z)
    return z * logistic.coef_[0]


def forest_contributions(forest: RandomForestClassifier, x: np.ndarray) -> np.ndarray:
    """Path contributions to P(positive), averaged over the trees: along a row's path every
    split adds (child mean - parent mean) to the feature it splits on. Each tree's sums are
    kept per node (``path_credit``), so a row's contributions are those of its leaf."""
    leaves = forest.apply(x.astype(np.float32))
    total = np.zeros_like(x, dtype=np.float64)
    for position, estimator in enumerate(forest.estimators_):
        total += path_credit(estimator.tree_, x.shape[1])[leaves[:, position]]
    return total / len(forest.estimators_)


def path_credit(tree, n_features: int) -> np.ndarray:
    """(nodes, features): the credit each feature has gathered on the path from the root to
    each node, summed root first (a sklearn ``Tree``; built one depth level at a time)."""
    value = tree.value[:, 0, :]
    mean = value[:, 1] / value.sum(axis=1)  # P(positive) at each node
    credit = np.zeros((tree.node_count, n_features))
    level = np.array([0])
    while level.size:
        for side in (tree.children_left, tree.children_right):
            parents = level[side[level] >= 0]
            children = side[parents]
            credit[children] = credit[parents]
            credit[children, tree.feature[parents]] += mean[children] - mean[parents]
        level = np.concatenate([tree.children_left[level], tree.children_right[level]])
        level = level[level >= 0]
    return credit


def xgboost_contributions(
    model: xgb.XGBClassifier, x: np.ndarray, exact: bool = False
) -> np.ndarray:
    """Per-row, per-feature contributions to the margin (the bias column dropped).

    By default the Saabas approximation (``approx_contribs``): about 40x faster than exact
    TreeSHAP (0.5 s vs 20 s for 20k users on 2 cores); measured against exact on 2,000 users it
    picks the same top reason for 90% of them, 89% of the top-three overlap, and the direction
    (raises/lowers) of the top reason always agrees.
    """
    booster = model.get_booster()
    return booster.predict(xgb.DMatrix(x), pred_contribs=True, approx_contribs=not exact)[:, :-1]


def top_reasons(
    model: object,
    design: Design,
    frame: pl.DataFrame,
    top: int = 3,
    outcome: str = OUTCOMES["conversion"],
    prefix: str = "reason_",
) -> pl.DataFrame:
    """``user_id`` plus ``<prefix>1..<prefix><top>`` for every row of ``frame``, from the
    contributions of ``model`` (any family of core.models)."""
    x = design.matrix(frame)
    contrib = contributions(model, x)
    order = np.argsort(-np.abs(contrib), axis=1)[:, :top]
    names = design.names
    rows = np.arange(len(x))
    columns = {}
    for r in range(top):
        j = order[:, r]
        values, c = x[rows, j], contrib[rows, j]
        texts = np.empty(len(x), dtype=object)
        for feature in np.unique(j):
            of_feature = j == feature
            texts[of_feature] = _phrases(names[feature], values[of_feature], c[of_feature], outcome)
        columns[f"{prefix}{r + 1}"] = texts
    return frame.select("user_id").with_columns(
        pl.Series(k, v, dtype=pl.String) for k, v in columns.items()
    )
