"""Choosing the knobs on the validation window, and the served choice that follows from them.

A small grid: the decay half-life (or none), EASE's lambda and the hybrid's weights. Each method
keeps the knobs that score best (NDCG@k) on the validation window; the served default is the
hybrid or its best single component, whichever scores better there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp

from ubap_assets.core.recommend.interaction_state import training_from_state
from ubap_assets.core.recommend.interactions import (
    Interactions,
    engaged_pages,
    history_start,
    load_training,
    load_training_by_half_life,
)
from ubap_assets.core.recommend.params import METHODS, RecommendationError, RecommenderParams
from ubap_assets.core.recommend.scorers import ItemGraph, RecommenderModel, fit
from ubap_assets.core.recommend.scoring import (
    Weights,
    evaluable_users,
    score_window,
    window_relevance,
)
from ubap_assets.core.recommend.texts import Catalogue
from ubap_assets.core.sampling import sample_mask

DEFAULT_WEIGHTS: tuple[Weights, ...] = (
    (0.1, 0.85, 0.05),
    (0.05, 0.9, 0.05),
    (0.0, 0.9, 0.1),
    (0.2, 0.7, 0.1),
    (0.1, 0.7, 0.2),
    (0.3, 0.5, 0.2),
)

# Most validation users the grid is scored on: beyond this a deterministic sample of them. The
# standard error of a mean NDCG over 10k users is about 0.003, below the gaps that decide the
# grid, while scoring every user of a large site multiplies the step's time (user-kNN mostly).
MAX_TUNING_USERS = 10_000


@dataclass(frozen=True)
class TuningGrid:
    """The validation grid. None in ``half_lives`` means no decay."""

    half_lives: tuple[float | None, ...] = (None, 30.0, 120.0)
    ease_lambdas: tuple[float, ...] = (50.0, 200.0, 500.0, 2000.0)
    weights: tuple[Weights, ...] = DEFAULT_WEIGHTS

    def validate(self) -> TuningGrid:
        if not self.half_lives or not self.ease_lambdas or not self.weights:
            raise RecommendationError("the tuning grid needs at least one value per knob")
        if any(h is not None and h <= 0 for h in self.half_lives) or min(self.ease_lambdas) <= 0:
            raise RecommendationError("half-lives and EASE lambdas in the grid must be > 0")
        for w in self.weights:
            if len(w) != 3 or min(w) < 0 or sum(w) <= 0 or max(w) == sum(w):
                raise RecommendationError(
                    f"hybrid weights {w}: give (content, collaborative, popularity), >= 0, "
                    "with at least two non-zero (one alone is a single component, not a hybrid)"
                )
        return self


def interactions_until(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    end: datetime,
) -> Interactions:
    """Every event before ``end`` (or the last ``history_days``) as training matrices."""
    return load_training(con, history_start(end, params), end, params, catalogue)


def interactions_by_half_life(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    end: datetime,
    half_lives: Sequence[float | None],
) -> dict[float | None, Interactions]:
    """``interactions_until`` under each of ``half_lives``, in one read."""
    start = history_start(end, params)
    return load_training_by_half_life(con, start, end, params, catalogue, half_lives)


def window_training(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    end: datetime,
    half_lives: Sequence[float | None],
    pairs: pl.DataFrame,
) -> tuple[dict[float | None, Interactions], sp.csr_matrix, np.ndarray]:
    """What scoring a window starting at ``end`` needs: the training matrices before it under
    each half-life (one read), the window's relevance and the ids of its evaluable users. Every
    half-life has the same users and pages, so the relevance is built once, on the first."""
    trains = interactions_by_half_life(con, catalogue, params, end, half_lives)
    first = trains[next(iter(trains))]
    relevance = window_relevance(first, catalogue, params.exclude, pairs)
    return trains, relevance, evaluable_users(first, relevance)


def served_interactions(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    end: datetime,
    changed_from: date | None,
) -> tuple[Interactions, str]:
    """The served model's training matrices and a note on how they were read: the whole
    history through the running state (a night reads only its recent days), or the last
    ``history_days`` directly. ``changed_from``: the first day the run rewrote (None: unknown,
    the state is rebuilt)."""
    if params.history_days is not None:
        note = f"interactions: the last {params.history_days} days read directly"
        return interactions_until(con, catalogue, params, end), note
    return training_from_state(con, end, params, changed_from, catalogue)


def fit_until(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    segments: pl.DataFrame | None,
    end: datetime,
    train: Interactions | None = None,
    graph: ItemGraph | None = None,
) -> RecommenderModel:
    """The model fitted on every event before ``end`` (or the last ``history_days``);
    ``graph``: its item graph, fitted before (``item_graph.served_item_graph``)."""
    train = train if train is not None else interactions_until(con, catalogue, params, end)
    return fit(catalogue, train, params, segments, graph)


def with_weights(params: RecommenderParams, weights: Weights) -> RecommenderParams:
    content, collaborative, popularity = weights
    return replace(
        params, w_content=content, w_collaborative=collaborative, w_popularity=popularity
    )


def component_methods(params: RecommenderParams) -> dict[str, str]:
    """The hybrid's components as evaluated methods (a blended collaborative part has none)."""
    methods = {
        "content": "content",
        "popularity": "segment_popularity" if params.use_segments else "global_popularity",
    }
    if params.collaborative in METHODS:
        methods["collaborative"] = params.collaborative
    return methods


@dataclass(frozen=True)
class Tuning:
    """Per method, the knobs chosen on validation and the NDCG@k they scored there."""

    chosen: dict[str, RecommenderParams]
    validation_ndcg: dict[str, float] = field(default_factory=dict)
    validation_users: int = 0
    served: str = "hybrid"
    best_component: str = ""
    note: str = ""

    @property
    def tuned(self) -> bool:
        return bool(self.validation_ndcg)


def tune(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    params: RecommenderParams,
    segments: pl.DataFrame | None,
    validation_start: datetime,
    validation_end: datetime,
    grid: TuningGrid,
    min_users: int,
    max_users: int = 0,
) -> Tuning:
    """Score the grid on [validation_start, validation_end), the model fitted before it, on
    every evaluable user or a deterministic sample of ``max_users`` of them (0: all)."""
    grid.validate()
    weights_grid = list(dict.fromkeys([tuple(params.component_weights.values()), *grid.weights]))
    pairs = engaged_pages(con, validation_start, validation_end)
    results: dict[str, list[tuple[float, RecommenderParams]]] = {m: [] for m in METHODS}
    # Who can be evaluated does not depend on the knobs: counted before fitting anything.
    half_lives = list(dict.fromkeys(grid.half_lives))  # a repeated value would score the same
    trains, relevance, evaluable = window_training(
        con, catalogue, params, validation_start, half_lives, pairs
    )
    users = len(evaluable)
    if users < min_users:
        return Tuning(
            chosen=dict.fromkeys(METHODS, params),
            validation_users=users,
            note=(
                f"validation window has {users} evaluable users (< {min_users}): "
                "insufficient data to tune, configured knobs kept"
            ),
        )
    # The same users for every point of the grid: the ids of a deterministic sample, or all.
    only = sampled(evaluable, max_users, params.seed)
    scored = users if only is None else len(only)
    for half_life in half_lives:
        decayed = replace(params, half_life_days=half_life)
        base = fit_until(con, catalogue, decayed, segments, validation_start, trains.pop(half_life))
        for position, ease_lambda in enumerate(grid.ease_lambdas):
            knobs = replace(decayed, ease_lambda=ease_lambda)
            model = base.with_params(knobs)
            variants = {"ease": ("ease", None)}
            if position == 0:  # lambda changes EASE only
                variants |= {m: (m, None) for m in METHODS if m not in ("ease", "hybrid")}
            if position == 0 or params.collaborative in ("ease", "blend"):
                variants |= {f"hybrid {w}": ("hybrid", w) for w in weights_grid}
            scores = score_window(model, pairs, variants, params.k, params.seed, only, relevance)
            for label, (method, weights) in variants.items():
                chosen = with_weights(knobs, weights) if weights else knobs
                results[method].append((scores.mean(label), chosen))
    chosen, best = {}, {}
    for method, candidates in results.items():
        ndcgs = np.array([ndcg for ndcg, _ in candidates])
        winner = int(np.argmax(ndcgs))  # first best: the grid's order breaks ties
        best[method], chosen[method] = float(ndcgs[winner]), candidates[winner][1]
    components = component_methods(params)
    best_component = max(components.values(), key=lambda m: best[m])
    served = "hybrid" if best["hybrid"] >= best[best_component] else best_component
    note = (
        f"knobs tuned on a deterministic sample of {scored:,} of the {users:,} evaluable "
        "validation users"
        if scored < users
        else ""
    )
    return Tuning(chosen, best, scored, served, best_component, note)


def sampled(evaluable: np.ndarray, max_users: int, seed: int) -> np.ndarray | None:
    """The ids of a deterministic sample of ``max_users`` of the ``evaluable`` ids, or None
    (every one) when there are no more than that or ``max_users`` is 0."""
    if not 0 < max_users < len(evaluable):
        return None
    return evaluable[sample_mask(evaluable.tolist(), max_users, seed)]


def serving_params(method: str, knobs: RecommenderParams) -> RecommenderParams:
    """Knobs that make the served lists rank like ``method`` did in the evaluation."""
    if method == "hybrid":
        return knobs
    if method == "content":
        return with_weights(knobs, (1.0, 0.0, 0.0))
    if method in ("segment_popularity", "global_popularity"):
        return replace(
            with_weights(knobs, (0.0, 0.0, 1.0)), use_segments=method == "segment_popularity"
        )
    if method in ("ease", "item_knn", "user_knn"):
        return replace(with_weights(knobs, (0.0, 1.0, 0.0)), collaborative=method)
    raise RecommendationError(f"method {method!r} cannot be served")


def served_params(
    rec_evaluation: pl.DataFrame, params: RecommenderParams
) -> tuple[RecommenderParams, str]:
    """The served knobs from ``rec_evaluation``'s served row, and a sentence saying which."""
    served = (
        rec_evaluation.filter(pl.col("is_served"))
        if "is_served" in rec_evaluation.columns
        else rec_evaluation.clear()
    )
    if served.is_empty():
        return params, "rec_evaluation names no served method: configured knobs"
    row = served.row(0, named=True)
    knobs = replace(
        params,
        half_life_days=row["half_life_days"],
        ease_lambda=float(row["ease_lambda"]),
        w_content=float(row["w_content"]),
        w_collaborative=float(row["w_collaborative"]),
        w_popularity=float(row["w_popularity"]),
        exclude=row.get("exclude") or params.exclude,
    )
    return serving_params(row["method"], knobs).validate(), str(row["selection"] or "")
