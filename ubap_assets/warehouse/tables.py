"""The table contract: every table the pipeline writes, named once.

Dagster-free. The asset key, the table name and the constant here are the same word, so the
API, the dashboard and the pipeline can never disagree about where a thing lives.
"""

from typing import Final

# --- events: the behaviour data (synthetic generator or ingested files) ---
USERS: Final = "users"  # one row per user: signup date, country, device, traffic source
PAGES: Final = "pages"  # one row per page of the catalogue: url, title, description, category
EVENTS: Final = "events"  # one row per event; daily-partitioned on event_ts
EVENT_REJECTS: Final = "event_rejects"  # one row per ingested row that failed validation
# Ground truth (group "ground_truth"): read only by the scoring assets, never served.
USER_PERSONAS: Final = "user_personas"  # the generator's latent persona per user
INJECTED_ANOMALIES: Final = "injected_anomalies"  # the planted anomalies

# --- features, segments, models, predictions ---
USER_FEATURES: Final = "user_features"
USER_SEGMENTS: Final = "user_segments"
SEGMENT_PROFILES: Final = "segment_profiles"
SEGMENT_MODEL: Final = "segment_model"  # one row: the segmentation fit in service (centroids)
USER_MAP: Final = "user_map"  # one row per sampled user: segment and 2-D PCA position
SEGMENT_SCORES: Final = "segment_scores"  # one row: the segments scored against the personas
MODEL_METRICS: Final = "model_metrics"
MODEL_CARDS: Final = "model_cards"
MODEL_CURVES: Final = "model_curves"
USER_PREDICTIONS: Final = "user_predictions"

# --- trends, funnels, retention, anomalies, summary ---
SESSIONS: Final = "sessions"  # one row per session: the one pass over events the trends read
# Day-partitioned aggregates the nightly run extends a day at a time (see docs/tables/trends.md).
USER_DAILY: Final = "user_daily"  # one row per (day, user): their sessions that started that day
PAGE_DAILY: Final = "page_daily"  # one row per (day, page): its events that day
USER_PAGE_DAILY: Final = "user_page_daily"  # one row per (day, user, page, event type)
DAILY_TRENDS: Final = "daily_trends"
WEEKLY_TRENDS: Final = "weekly_trends"
SEGMENT_TRENDS: Final = "segment_trends"
FUNNEL_DAILY: Final = "funnel_daily"
FUNNEL_DIMENSIONS: Final = "funnel_dimensions"  # funnel_daily by device and traffic source
FUNNEL_SEGMENTS: Final = "funnel_segments"
RETENTION_COHORTS: Final = "retention_cohorts"
LIFECYCLE_WEEKLY: Final = "lifecycle_weekly"
ANOMALIES: Final = "anomalies"
ANOMALY_HISTORY: Final = "anomaly_history"
ANOMALY_SCORES: Final = "anomaly_scores"
INCIDENTS: Final = "incidents"  # one row per incident: flagged points grouped over days and scopes
INCIDENT_CONTRIBUTORS: Final = "incident_contributors"  # dimension values ranked by share
ANOMALY_SENSITIVITY: Final = "anomaly_sensitivity"  # incidents each threshold would have raised
# Not served: each series x day's inputs, scores and carried state, so a night resumes scoring.
ANOMALY_STATE: Final = "anomaly_state"
SUMMARY: Final = "summary"

# --- recommendations ---
PAGE_EMBEDDINGS: Final = "page_embeddings"
SIMILAR_PAGES: Final = "similar_pages"
USER_RECOMMENDATIONS: Final = "user_recommendations"
ADMIN_INSIGHTS: Final = "admin_insights"
REC_EVALUATION: Final = "rec_evaluation"
# Not served: per (user, page, decay period) exact sums of the days before a weekly cut, and its
# one-row meta, so a night reads the recent days only (core/recommend/interaction_state.py).
REC_INTERACTION_STATE: Final = "rec_interaction_state"
REC_INTERACTION_STATE_META: Final = "rec_interaction_state_meta"

# --- serving: written only into a published snapshot, never into the warehouse ---
SNAPSHOT_META: Final = "snapshot_meta"  # one row: snapshot id, run id, materialized at
CHECK_RESULTS: Final = "check_results"  # one row per asset check evaluated in the publishing run

# Tables copied into every published serving snapshot (the API and dashboard read only these).
# Ground truth is not among them: scores against it (segment_scores, anomaly_scores) are.
SERVING_TABLES: Final[tuple[str, ...]] = (
    USERS,
    PAGES,
    EVENTS,
    EVENT_REJECTS,
    USER_FEATURES,
    USER_SEGMENTS,
    SEGMENT_PROFILES,
    USER_MAP,
    SEGMENT_SCORES,
    MODEL_METRICS,
    MODEL_CARDS,
    MODEL_CURVES,
    USER_PREDICTIONS,
    DAILY_TRENDS,
    WEEKLY_TRENDS,
    SEGMENT_TRENDS,
    FUNNEL_DAILY,
    FUNNEL_DIMENSIONS,
    FUNNEL_SEGMENTS,
    RETENTION_COHORTS,
    LIFECYCLE_WEEKLY,
    ANOMALIES,
    ANOMALY_HISTORY,
    ANOMALY_SCORES,
    INCIDENTS,
    INCIDENT_CONTRIBUTORS,
    ANOMALY_SENSITIVITY,
    SUMMARY,
    SIMILAR_PAGES,
    USER_RECOMMENDATIONS,
    ADMIN_INSIGHTS,
    REC_EVALUATION,
)
