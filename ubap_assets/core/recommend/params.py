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
EXCLUDE_MODES = ("converted", "seen", "none")
COLLABORATIVE_METHODS = ("ease", "item_knn", "user_knn", "blend")


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
    half_life_days: float = 30.0
    history_days: int = 90
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    conversion_events: tuple[str, ...] = ("purchase",)
    exclude: str = "converted"
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
        if self.half_life_days <= 0 or self.history_days < 1:
            raise RecommendationError("half_life_days must be > 0 and history_days >= 1")
        if self.ease_lambda <= 0:
            raise RecommendationError(f"ease_lambda must be > 0 (got {self.ease_lambda})")
        if min(self.content_neighbours, self.item_neighbours, self.user_neighbours) < 1:
            raise RecommendationError("neighbour counts must be at least 1")
        return self
