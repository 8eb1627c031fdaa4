"""The recommender's knobs, their defaults and the one error type bad input raises."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "page_view": 1.0,
    "scroll": 0.5,
    "search": 0.5,
    "click": 1.5,
    "add_to_cart": 4.0,
    "checkout_start": 5.0,
    "purchase": 8.0,
}
# Navigation pages nobody needs recommending: never candidates (configurable).
DEFAULT_NON_RECOMMENDABLE: tuple[str, ...] = ("home", "search", "cart", "checkout")
SOURCES = ("hybrid", "segment_popularity", "global_popularity")
COMPONENTS = ("content", "collaborative", "popularity")
# Pages a user is never shown, in served lists and in the evaluation alike: everything the user
# engaged with (any event on it), or only the pages they converted on.
EXCLUDE_MODES = ("engaged", "converted")
# How a user's decayed event weights become the preference matrix: log1p of the weighted sum, or
# 1 for every (user, page) with any weighted event (binary implicit feedback, textbook EASE).
STRENGTHS = ("log1p", "binary")
# Fewer users than this in a window: its metrics are "insufficient data", not figures.
MIN_EVALUATED_USERS = 100
COLLABORATIVE_METHODS = ("ease", "item_knn", "user_knn", "blend")
# Every method the evaluation scores; the first three are baselines.
METHODS: tuple[str, ...] = (
    "random",
    "global_popularity",
    "segment_popularity",
    "content",
    "item_knn",
    "user_knn",
    "ease",
    "hybrid",
)
BASELINES = frozenset({"random", "global_popularity", "segment_popularity"})


class RecommendationError(ValueError):
    """Bad input to the recommender, with a message that names the fix."""


@dataclass(frozen=True)
class RecommenderParams:
    """Knobs of the recommender (the Dagster configs mirror these fields)."""

    k: int = 10
    w_content: float = 0.1
    w_collaborative: float = 0.85
    w_popularity: float = 0.05
    collaborative: str = "ease"
    ease_lambda: float = 500.0
    content_neighbours: int = 20
    item_neighbours: int = 40
    user_neighbours: int = 50
    user_pool: int = 20_000
    # None: no time decay. Tuned on the validation window by rec_evaluation.
    half_life_days: float | None = None
    # None: the user's whole history (the default); a number keeps only the last N days.
    history_days: int | None = None
    strength: str = "log1p"
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    conversion_events: tuple[str, ...] = ("purchase",)
    exclude: str = "engaged"
    non_recommendable_page_types: tuple[str, ...] = DEFAULT_NON_RECOMMENDABLE
    use_segments: bool = True
    seed: int = 0

    @property
    def component_weights(self) -> dict[str, float]:
        """The hybrid's weight per component, keyed like ``COMPONENTS``."""
        return {
            "content": self.w_content,
            "collaborative": self.w_collaborative,
            "popularity": self.w_popularity,
        }

    def validate(self) -> RecommenderParams:
        if self.k < 1:
            raise RecommendationError(f"k must be at least 1 (got {self.k})")
        weights = (self.w_content, self.w_collaborative, self.w_popularity)
        if min(weights) < 0 or sum(weights) <= 0:
            raise RecommendationError(
                f"hybrid weights must be >= 0 with a positive sum (got content={self.w_content}, "
                f"collaborative={self.w_collaborative}, popularity={self.w_popularity})"
            )
        if self.exclude not in EXCLUDE_MODES:
            raise RecommendationError(
                f"exclude must be one of {EXCLUDE_MODES} (got {self.exclude!r})"
            )
        if self.collaborative not in COLLABORATIVE_METHODS:
            raise RecommendationError(
                f"collaborative must be one of {COLLABORATIVE_METHODS} (got {self.collaborative!r})"
            )
        if self.strength not in STRENGTHS:
            raise RecommendationError(
                f"strength must be one of {STRENGTHS} (got {self.strength!r})"
            )
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise RecommendationError(
                f"half_life_days must be > 0, or None for no decay (got {self.half_life_days})"
            )
        if self.history_days is not None and self.history_days < 1:
            raise RecommendationError(
                f"history_days must be >= 1, or None for the whole history "
                f"(got {self.history_days})"
            )
        if self.ease_lambda <= 0:
            raise RecommendationError(f"ease_lambda must be > 0 (got {self.ease_lambda})")
        if min(self.content_neighbours, self.item_neighbours, self.user_neighbours) < 1:
            raise RecommendationError("neighbour counts must be at least 1")
        return self
