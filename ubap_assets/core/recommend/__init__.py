"""Recommendations: content-based, collaborative (item-kNN, user-kNN, EASE) and a hybrid.

Dagster-free. One module per step, in the order data flows:

- ``params``: the knobs (``RecommenderParams``), their defaults and ``RecommendationError``;
- ``texts``: page text to embed, stored vectors (reused while text and model are unchanged),
  similar pages, the candidate ``Catalogue``;
- ``interactions``: implicit feedback read from ``user_page_daily`` into sparse (user, page)
  matrices;
- ``interaction_state``: the running per-(user, page) sums a night resumes from, so the served
  model's read does not grow with the history;
- ``scorers``: ``fit`` builds the frozen ``RecommenderModel`` and its component scorers;
- ``render``: top-k lists per user with their source and reason;
- ``scoring``: one window scored per method (per-user metrics, bootstrap intervals);
- ``tuning``: the knobs chosen on the validation window, and the served choice;
- ``evaluation``: train / validation / test windows and the ``rec_evaluation`` table;
- ``ranking``: the top-k and scaling primitives the others share.
"""

from ubap_assets.core.recommend.interactions import (
    Interactions,
    build_interactions,
    data_end,
    engaged_pages,
    history_start,
    load_interactions,
    load_segments,
)
from ubap_assets.core.recommend.params import (
    COLLABORATIVE_METHODS,
    COMPONENTS,
    DEFAULT_EVENT_WEIGHTS,
    DEFAULT_NON_RECOMMENDABLE,
    EXCLUDE_MODES,
    METHODS,
    MIN_EVALUATED_USERS,
    SOURCES,
    STRENGTHS,
    RecommendationError,
    RecommenderParams,
)
from ubap_assets.core.recommend.render import LISTS_SCHEMA, recommendation_lists
from ubap_assets.core.recommend.scorers import RecommenderModel, fit
from ubap_assets.core.recommend.texts import (
    SIMILAR_PAGES_SCHEMA,
    Catalogue,
    EmbeddingRefresh,
    build_catalogue,
    embedding_matrix,
    embeddings_frame,
    page_texts,
    refresh_embeddings,
    similar_pages,
)

__all__ = [
    "COLLABORATIVE_METHODS",
    "COMPONENTS",
    "DEFAULT_EVENT_WEIGHTS",
    "DEFAULT_NON_RECOMMENDABLE",
    "EXCLUDE_MODES",
    "METHODS",
    "MIN_EVALUATED_USERS",
    "STRENGTHS",
    "LISTS_SCHEMA",
    "SIMILAR_PAGES_SCHEMA",
    "SOURCES",
    "Catalogue",
    "EmbeddingRefresh",
    "Interactions",
    "RecommendationError",
    "RecommenderModel",
    "RecommenderParams",
    "build_catalogue",
    "build_interactions",
    "data_end",
    "embedding_matrix",
    "embeddings_frame",
    "engaged_pages",
    "history_start",
    "fit",
    "load_interactions",
    "load_segments",
    "page_texts",
    "recommendation_lists",
    "refresh_embeddings",
    "similar_pages",
]
