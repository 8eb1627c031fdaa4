"""Run-config knobs of the recommendation assets (mirrors ``core.recommend.RecommenderParams``)."""

from dataclasses import fields

import dagster as dg
from pydantic import Field

from ubap_assets.core.insights import InsightParams
from ubap_assets.core.recommend import (
    DEFAULT_EVENT_WEIGHTS,
    DEFAULT_NON_RECOMMENDABLE,
    MIN_EVALUATED_USERS,
    RecommendationError,
    RecommenderParams,
)
from ubap_assets.core.recommend.evaluation import MAX_TEST_USERS
from ubap_assets.core.recommend.tuning import DEFAULT_WEIGHTS, MAX_TUNING_USERS, TuningGrid


class HybridConfig(dg.Config):
    """The hybrid recommender; user_recommendations and rec_evaluation share these defaults."""

    k: int = Field(default=10, description="Recommendations per user.")
    w_content: float = Field(default=0.1, description="Weight of content similarity.")
    w_collaborative: float = Field(default=0.85, description="Weight of collaborative filtering.")
    w_popularity: float = Field(
        default=0.05, description="Weight of popularity (the user's segment's when known)."
    )
    collaborative: str = Field(
        default="ease",
        description="Collaborative component: ease, item_knn, user_knn or blend (all three).",
    )
    ease_lambda: float = Field(
        default=500.0, description="EASE L2 regularization (rec_evaluation tunes it)."
    )
    half_life_days: float | None = Field(
        default=None,
        description="Time-decay half-life of events; null: no decay (rec_evaluation tunes it).",
    )
    history_days: int | None = Field(
        default=None,
        description="Days of events the model learns from; null: each user's whole history.",
    )
    strength: str = Field(
        default="log1p",
        description="Preference per (user, page): log1p of the weighted events, or binary.",
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Implicit-feedback weight per event type (view < add_to_cart < purchase).",
    )
    exclude: str = Field(
        default="engaged",
        description=(
            "Pages never recommended to a user, in served lists and in the evaluation alike: "
            "engaged (any event on the page) or converted (only pages converted on)."
        ),
    )
    conversion_events: list[str] = Field(
        default_factory=lambda: ["purchase"], description="Event types that mean converted."
    )
    non_recommendable_page_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_RECOMMENDABLE),
        description="Navigation page types never recommended.",
    )
    use_segments: bool = Field(
        default=True, description="Use user_segments for segment popularity when it exists."
    )
    user_pool: int = Field(default=20_000, description="Max neighbour pool for user-kNN.")
    seed: int = Field(default=0, description="Seed (user-kNN pool sample, random baseline).")

    def params(self) -> RecommenderParams:
        # Every knob named like a RecommenderParams field passes through; the rest keep defaults.
        shared = {field.name for field in fields(RecommenderParams)} & set(
            HybridConfig.model_fields
        )
        knobs = {name: getattr(self, name) for name in shared} | {
            "event_weights": dict(self.event_weights),
            "conversion_events": tuple(self.conversion_events),
            "non_recommendable_page_types": tuple(self.non_recommendable_page_types),
        }
        try:
            return RecommenderParams(**knobs).validate()
        except RecommendationError as exc:
            raise dg.Failure(
                description=f"Invalid recommendation config: {exc}",
                metadata={"fix": "correct the run config"},
            ) from exc


class RecommendationsConfig(HybridConfig):
    """Knobs of user_recommendations; decay, lambda and weights come from rec_evaluation's
    served row when it has one."""


class EvaluationConfig(HybridConfig):
    """Knobs of rec_evaluation: the windows, the guards and the tuning grid."""

    test_days: int = Field(default=7, description="Test window: the last test_days of data.")
    validation_days: int = Field(
        default=7, description="Validation window (tuning): the validation_days before the test."
    )
    min_users: int = Field(
        default=MIN_EVALUATED_USERS,
        description="Fewer evaluable users in a window: insufficient data (no figures).",
    )
    bootstrap_resamples: int = Field(
        default=1000, description="Bootstrap resamples of the test users for the 95% intervals."
    )
    max_tuning_users: int = Field(
        default=MAX_TUNING_USERS,
        ge=0,
        description="Most validation users the tuning grid is scored on: a larger window is "
        "cut to a deterministic sample (the same users on every run), and the note says so. "
        "0 = every user.",
    )
    max_test_users: int = Field(
        default=MAX_TEST_USERS,
        ge=0,
        description="Most test users the reported figures are computed on: a larger window is "
        "cut to a deterministic sample, users_evaluated is its size and the note gives both "
        "counts. 0 = every user.",
    )
    tune_half_lives: list[float] = Field(
        default_factory=lambda: [0.0, 30.0, 120.0],
        description="Half-lives tried on validation (days; 0 = no decay).",
    )
    tune_ease_lambdas: list[float] = Field(
        default_factory=lambda: [50.0, 200.0, 500.0, 2000.0],
        description="EASE lambdas tried on validation.",
    )
    tune_weights: list[list[float]] = Field(
        default_factory=lambda: [list(w) for w in DEFAULT_WEIGHTS],
        description="Hybrid weights (content, collaborative, popularity) tried on validation.",
    )

    def grid(self) -> TuningGrid:
        try:
            return TuningGrid(
                half_lives=tuple(h if h > 0 else None for h in self.tune_half_lives),
                ease_lambdas=tuple(self.tune_ease_lambdas),
                weights=tuple(tuple(w) for w in self.tune_weights),
            ).validate()
        except RecommendationError as exc:
            raise dg.Failure(
                description=f"Invalid tuning grid: {exc}",
                metadata={"fix": "correct the run config"},
            ) from exc


class SimilarPagesConfig(dg.Config):
    k: int = Field(default=10, description="Neighbours per page.")


class InsightsConfig(dg.Config):
    window_days: int = Field(default=28, description="Days of events judged.")
    min_page_views: int = Field(default=50, description="Pages with fewer views are not judged.")
    rate_ratio: float = Field(default=1.25, description="Flag exit/bounce >= this x the median.")
    funnel_gap: float = Field(default=0.25, description="Flag a segment this much below overall.")
    island_similarity: float = Field(
        default=0.35, description="A page whose nearest neighbour is below this is an island."
    )

    def params(self) -> InsightParams:
        return InsightParams(
            window_days=self.window_days,
            min_page_views=self.min_page_views,
            rate_ratio=self.rate_ratio,
            funnel_gap=self.funnel_gap,
            island_similarity=self.island_similarity,
            recent_days=self.window_days,
        )
