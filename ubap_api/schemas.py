"""Response models: one per resource, lists wrapped as {data, count, total, limit, offset}.

Columns follow docs/tables/*.md (the producers' contract).
"""

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ubap_assets.core.metrics import describe

T = TypeVar("T")


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Tables hold naive UTC timestamps; the API states the zone (RFC 3339, "...Z").
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


class Problem(BaseModel):
    detail: str = Field(description="What went wrong and how to fix it.")


# Documented error answers: every /api route may say 401 (token) or 503 (no snapshot/table).
API_ERRORS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token (UBAP_API_TOKEN)."},
    503: {
        "model": Problem,
        "description": "No snapshot published yet, the pointer or snapshot file is unreadable, "
        "or a table is missing.",
    },
}
NOT_FOUND: dict[int | str, dict] = {404: {"model": Problem, "description": "Unknown id."}}


class Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Page(BaseModel, Generic[T]):
    data: list[T] = Field(description="This page's rows, in the endpoint's order.")
    count: int = Field(description="Rows in this page.")
    total: int = Field(description="Rows matching the filters, all pages.")
    limit: int = Field(description="The page size asked for (rows, 1..1000).")
    offset: int = Field(description="Rows skipped before this page.")


# --- service ---
NotRefreshed = Annotated[
    dict[str, str],
    Field(
        description="Tables the publishing run could not refresh, with the reason: their data "
        "is from an earlier run. Empty when everything is fresh."
    ),
]


class Health(BaseModel):
    status: Literal["ok", "degraded", "no_snapshot", "unreadable"] = Field(
        description="'ok': a snapshot is served; 'degraded': served, but some tables were not "
        "refreshed; 'no_snapshot': nothing published yet (200); 'unreadable': the pointer or "
        "snapshot file is broken (503)."
    )
    snapshot_id: str | None = Field(
        description="The snapshot served (its file name without .duckdb); null without one.",
        examples=["20260215T020000-3f2a9c1e"],
    )
    detail: str = Field(default="", description="What is wrong and how to fix it, if anything.")
    not_refreshed: NotRefreshed = {}

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "snapshot_id": "20260216T020000-3f2a9c1e",
                    "detail": "",
                    "not_refreshed": {},
                }
            ]
        }
    )


class CheckResult(Row):
    asset_key: str = Field(description="The checked asset (its table name).")
    check_name: str = Field(description="The asset check's name.")
    status: Literal["passed", "failed", "skipped"] = Field(
        description="skipped: the data could not be scored (too little of it, no ground truth); "
        "the description says why. A skipped check is neither passed nor failed."
    )
    passed: bool | None = Field(description="Null when the check was skipped.")
    severity: str | None = Field(description="ERROR or WARN; null when skipped.")
    blocking: bool = Field(description="True when a failure stops the assets downstream.")
    description: str = Field(description="What the check tests, or why it was skipped.")
    evaluated_at: UtcDateTime = Field(description="When the check ran (UTC).")
    run_id: str = Field(description="The Dagster run that evaluated it.")


class Meta(BaseModel):
    snapshot_id: str = Field(
        description="The snapshot served (its file name without .duckdb).",
        examples=["20260215T020000-3f2a9c1e"],
    )
    run_id: str | None = Field(description="The Dagster run that published it.")
    materialized_at: UtcDateTime | None = Field(description="When it was published (UTC).")
    age_seconds: float | None = Field(description="Seconds since the snapshot was published.")
    data_start: date | None = Field(description="First day with events (UTC).")
    data_end: date | None = Field(description="Last day with events (UTC; may be partial).")
    tables: list[str] = Field(description="Tables in the snapshot.")
    missing_tables: list[str] = Field(
        description="Serving tables the snapshot lacks (their endpoints answer 503)."
    )
    not_refreshed: NotRefreshed
    checks_total: int = Field(description="Asset checks evaluated by the publishing run.")
    checks_failed: int = Field(description="Of them, failed.")
    checks_skipped: int = Field(description="Checks that could not score this data (see each).")
    checks: list[CheckResult] = Field(description="Every check of the publishing run.")


# --- trends ---
class TrendMetrics(Row):
    active_users: int = Field(description=describe("active_users") + " Over a week: distinct.")
    new_users: int = Field(description="Users whose first event ever falls in the period (users).")
    returning_users: int = Field(description="active_users - new_users (users).")
    sessions: int = Field(description="Sessions starting in the period (sessions).")
    converted_sessions: int = Field(description="Sessions with at least one purchase (sessions).")
    bounced_sessions: int = Field(description="Sessions that bounced (sessions; see bounce_rate).")
    events: int = Field(description="Events of those sessions (events).")
    page_views: int = Field(description="Page views of those sessions (page views).")
    purchases: int = Field(description="Purchase events (purchases).")
    revenue: float = Field(description=describe("revenue") + " Rounded to 2 decimals.")
    conversion_rate: float = Field(
        description=describe("session_conversion_rate") + " A fraction 0..1 (0.034 = 3.4%)."
    )
    bounce_rate: float = Field(description=describe("bounce_rate") + " A fraction 0..1.")
    mean_session_duration_s: float = Field(
        description="Mean time from a session's first to its last event (seconds)."
    )
    pages_per_session: float = Field(description="page_views / sessions (pages).")
    is_complete: bool = Field(
        description="False for a day the data ends inside (partial), or a week missing days."
    )


# Keys first in the JSON: pydantic orders fields from the last base to the class itself.
class _DailyKeys(Row):
    day: date = Field(description="The UTC calendar day the sessions started on.")
    dimension: str = Field(
        description="Breakdown: 'all', 'device' or 'traffic_source'.", examples=["device"]
    )
    dimension_value: str = Field(
        description="The device or traffic source; 'all' when dimension is 'all'.",
        examples=["mobile"],
    )


class DailyTrend(TrendMetrics, _DailyKeys):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "day": "2026-02-15",
                    "dimension": "device",
                    "dimension_value": "mobile",
                    "active_users": 1204,
                    "new_users": 96,
                    "returning_users": 1108,
                    "sessions": 1631,
                    "converted_sessions": 52,
                    "bounced_sessions": 611,
                    "events": 9874,
                    "page_views": 6120,
                    "purchases": 58,
                    "revenue": 5913.4,
                    "conversion_rate": 0.031882,
                    "bounce_rate": 0.374617,
                    "mean_session_duration_s": 312.5,
                    "pages_per_session": 3.752299,
                    "is_complete": True,
                }
            ]
        }
    )


class _WeeklyKeys(Row):
    week_start: date = Field(description="Monday of the ISO week (UTC).")
    dimension: str = Field(
        description="Breakdown: 'all', 'device' or 'traffic_source'.", examples=["device"]
    )
    dimension_value: str = Field(
        description="The device or traffic source; 'all' when dimension is 'all'.",
        examples=["mobile"],
    )
    days_with_data: int = Field(description="Days of the week present in the data (0..7).")


class WeeklyTrend(TrendMetrics, _WeeklyKeys):
    pass


class _SegmentKeys(Row):
    day: date = Field(description="The UTC calendar day the sessions started on.")
    segment_id: int | None = Field(
        description="The segment's number (see /api/segments/list); null for all users.",
        examples=[0],
    )
    segment_name: str = Field(
        description="The segment's name; 'All users' for the all-users series.",
        examples=["Loyal buyers"],
    )


class SegmentTrend(TrendMetrics, _SegmentKeys):
    pass


# --- segments ---
SegmentNumber = Annotated[
    int, Field(description="The segment's number, stable across runs.", examples=[0])
]
SegmentName = Annotated[str, Field(description="The segment's name.", examples=["Loyal buyers"])]
SegmentUsers = Annotated[int, Field(description="Users in the segment (users).")]
SegmentShareOfUsers = Annotated[
    float, Field(description="Share of all users in this segment, a fraction 0..1.")
]
BuyerShare = Annotated[float, Field(description=describe("buyer_share") + " A fraction 0..1.")]


class SegmentProfile(Row):
    """A segment and the mean of its users' features (over each user's whole history)."""

    segment_id: SegmentNumber
    segment_name: SegmentName
    users: SegmentUsers
    share: SegmentShareOfUsers
    buyer_share: BuyerShare
    sessions: float = Field(description="Mean sessions per user (sessions).")
    pages_per_session: float = Field(description="Mean of users' page views per session (pages).")
    avg_session_minutes: float = Field(description="Mean of users' session length (minutes).")
    bounce_rate: float = Field(
        description="Mean over the segment's users of each user's "
        "bounce rate (bounced sessions / sessions; bounce as in the glossary). 0..1."
    )
    product_share: float = Field(description="Mean share of page views on product pages, 0..1.")
    blog_share: float = Field(description="Mean share of page views on blog pages, 0..1.")
    help_share: float = Field(description="Mean share of page views on help pages, 0..1.")
    add_to_cart_rate: float = Field(description="Mean add-to-cart events per session (events).")
    purchases: float = Field(description="Mean purchases per user (purchases).")
    revenue: float = Field(
        description="Mean revenue per user, in the currency of the source (2 decimals)."
    )
    recency_days: float = Field(description="Mean days since the user's last event (days).")
    active_days: float = Field(description="Mean distinct days with an event (days).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment_id": 0,
                    "segment_name": "Loyal buyers",
                    "users": 182,
                    "share": 0.2275,
                    "buyer_share": 0.791209,
                    "sessions": 14.2,
                    "pages_per_session": 5.31,
                    "avg_session_minutes": 7.4,
                    "bounce_rate": 0.182,
                    "product_share": 0.512,
                    "blog_share": 0.094,
                    "help_share": 0.031,
                    "add_to_cart_rate": 0.64,
                    "purchases": 3.1,
                    "revenue": 512.37,
                    "recency_days": 2.8,
                    "active_days": 11.6,
                }
            ]
        }
    )


class SegmentShare(Row):
    segment_id: SegmentNumber
    segment_name: SegmentName
    users: SegmentUsers
    share: SegmentShareOfUsers
    buyer_share: BuyerShare


class SegmentSummary(BaseModel):
    k: int = Field(description="Number of segments the clustering chose.")
    users: int = Field(description="Users segmented (users).")
    silhouette: float = Field(
        description="Silhouette of the K-means segments, -1..1 (higher = better separated)."
    )
    davies_bouldin: float = Field(
        description="Davies-Bouldin index of the segments, >= 0 (lower = better separated)."
    )
    ward_silhouette: float | None = Field(
        description="Silhouette of a Ward clustering with the same k (a second opinion)."
    )
    ward_agreement_ari: float | None = Field(
        description="Adjusted Rand index of K-means vs Ward, -1..1 (1 = the same grouping)."
    )
    persona_ari: float | None = Field(
        description="Adjusted Rand index of the segments against the synthetic generator's "
        "latent personas (-1..1, 1 = the same grouping); null without ground truth."
    )
    persona_note: str | None = Field(
        default=None, description="Why persona_ari is null (e.g. ingested data has no personas)."
    )
    run_id: str | None = Field(description="The Dagster run that clustered the users.")
    segments: list[SegmentShare] = Field(description="Each segment's size, largest first.")


class UserSegment(Row):
    segment_id: SegmentNumber
    segment_name: SegmentName
    distance_to_centroid: float | None = Field(
        default=None,
        description="Distance to the segment's centre in the scaled feature space "
        "(unitless; larger = less typical of the segment).",
    )


# --- predictions ---
Severity = Literal["low", "medium", "high"]


class ConversionModelName(StrEnum):
    """The values of /api/predictions/high-value/{model}: 'best' or a model family the pipeline
    fits for the conversion task (ubap_assets.core.models.MODEL_NAMES)."""

    best = "best"
    logistic_regression = "logistic_regression"
    random_forest = "random_forest"
    xgboost = "xgboost"


SCORE_NOTE = "Null when the task serves no model (insufficient data): see the task's note."
ProbabilityRank = "1 = the highest probability of the list; null when the task is not scored."
ModelName = (
    "The model family in service for the task that scored the user (logistic_regression, "
    "random_forest or xgboost); null when the task serves no model."
)
ModelVersion = Field(
    description="The run whose models scored the user (models live under models/<version>/).",
    examples=["3f2a9c1e-7b1d-4c8e-9a51-2d0c6f1b7e44"],
)
ScoredAt = Field(
    description="The cutoff the features were computed at (UTC): the scores describe the "
    "horizon after it."
)


class SegmentPrediction(Row):
    segment_id: SegmentNumber
    segment_name: SegmentName
    users: SegmentUsers
    mean_conversion_probability: float | None = Field(
        description="Mean P(purchase within the horizon) over the segment's users, a "
        "probability 0..1; null when no conversion model is served (insufficient data)."
    )
    mean_at_risk_probability: float | None = Field(
        description="Mean P(next session bounces) over the segment's users, a probability "
        "0..1; null when no bounce model is served."
    )
    at_risk_users: int = Field(
        description="Users flagged at_risk (probability >= the bounce model's threshold); 0 "
        "when no bounce model is served (users)."
    )
    at_risk_share: float = Field(description="at_risk_users / users, a fraction 0..1.")
    expected_converters: float | None = Field(
        default=None,
        description="Sum of the users' purchase probabilities: the number of users expected "
        "to purchase within the horizon (users, fractional); null without a conversion model.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment_id": 0,
                    "segment_name": "Loyal buyers",
                    "users": 182,
                    "mean_conversion_probability": 0.412731,
                    "mean_at_risk_probability": 0.183402,
                    "at_risk_users": 21,
                    "at_risk_share": 0.115385,
                    "expected_converters": 75.117,
                }
            ]
        }
    )


class ScoredUser(Row):
    user_id: str = Field(description="The user's id as in the events.", examples=["u0000123"])
    conversion_probability: float | None = Field(
        description=describe("purchase_within_horizon") + " A probability 0..1. " + SCORE_NOTE
    )
    conversion_rank: int | None = Field(default=None, description=ProbabilityRank)
    at_risk_probability: float | None = Field(
        description=describe("next_session_bounce") + " A probability 0..1. " + SCORE_NOTE
    )
    at_risk: bool | None = Field(
        description="at_risk_probability >= the bounce model's threshold (chosen on the "
        "validation window). " + SCORE_NOTE
    )
    at_risk_rank: int | None = Field(
        default=None,
        description="1 = the highest at_risk_probability; null when the bounce task is not scored.",
    )
    reasons: list[str] = Field(
        description="Up to three plain-word reasons from the model that scored this list: the "
        "conversion model's on high-value lists, the bounce model's on the at-risk list."
    )
    reason_method: str | None = Field(
        default=None, description="How the reasons were computed (the contribution method)."
    )
    segment_id: int | None = Field(
        default=None,
        description="The user's segment number (see /api/segments/list); null when the user "
        "has no segment (segmentation has not run, or the user was not segmented).",
        examples=[0],
    )
    segment_name: str | None = Field(
        default=None,
        description="The segment's name; null with segment_id.",
        examples=["Loyal buyers"],
    )
    conversion_model: str | None = Field(default=None, description=ModelName)
    bounce_model: str | None = Field(default=None, description=ModelName)
    model_version: str = ModelVersion
    scored_at: UtcDateTime = ScoredAt

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u0000123",
                    "conversion_probability": 0.873214,
                    "conversion_rank": 1,
                    "at_risk_probability": 0.061532,
                    "at_risk": False,
                    "at_risk_rank": 742,
                    "reasons": [
                        "purchased 4 times in the last 30 days",
                        "added 6 items to the cart",
                        "12 sessions in the last 7 days",
                    ],
                    "reason_method": "XGBoost pred_contribs (Saabas approximation of SHAP values, "
                    "log-odds)",
                    "segment_id": 0,
                    "segment_name": "Loyal buyers",
                    "conversion_model": "xgboost",
                    "bounce_model": "logistic_regression",
                    "model_version": "3f2a9c1e-7b1d-4c8e-9a51-2d0c6f1b7e44",
                    "scored_at": "2026-02-16T00:00:00Z",
                }
            ]
        }
    )


class ScoredPage(Page[ScoredUser]):
    note: str | None = Field(
        default=None,
        description="Why the list is empty: its task serves no model (insufficient data, with "
        "the numbers). Null when the task is scored.",
    )


def _interval(metric: str, end: str) -> object:
    return Annotated[
        float | None,
        Field(
            description=f"Bootstrap 95% interval of {metric}, {end} end (users resampled, "
            "seeded); null when not computed.",
        ),
    ]


UNIT_INTERVAL = "a fraction 0..1; null on 'insufficient data' rows"


class ModelMetric(Row):
    task: Literal["conversion", "bounce"] = Field(
        description="'conversion': " + describe("purchase_within_horizon") + " 'bounce': "
        "the next session bounces."
    )
    label: str | None = Field(
        default=None, description="The label in words, e.g. 'purchase within 14 days'."
    )
    model: str | None = Field(
        description="The model family (logistic_regression, random_forest, xgboost; "
        "true_propensity = the synthetic ground truth's ceiling). Null on a task's "
        "'insufficient data' rows."
    )
    split: Literal["validation", "test"] | None = Field(
        default=None,
        description="'validation': chose the model, its hyper-parameters and threshold; "
        "'test': the later, disjoint window that reports.",
    )
    status: str = Field(default="ok", description="'ok' or 'insufficient data'.")
    note: str | None = Field(default=None, description="Why a task has insufficient data.")
    n: int | None = Field(default=None, description="Labelled users in the window (users).")
    positives: int | None = Field(default=None, description="Positive labels among them (users).")
    positive_rate: float | None = Field(
        default=None, description=f"positives / n, the base rate: {UNIT_INTERVAL}."
    )
    roc_auc: float | None = Field(
        default=None,
        description="Area under the ROC curve, 0..1 (0.5 = chance); null on 'insufficient "
        "data' rows.",
    )
    roc_auc_ci_low: _interval("roc_auc", "low") = None
    roc_auc_ci_high: _interval("roc_auc", "high") = None
    pr_auc: float | None = Field(
        default=None,
        description=f"Area under the precision-recall curve (average precision; chance = "
        f"positive_rate): {UNIT_INTERVAL}.",
    )
    pr_auc_ci_low: _interval("pr_auc", "low") = None
    pr_auc_ci_high: _interval("pr_auc", "high") = None
    brier: float | None = Field(
        default=None,
        description="Brier score: mean squared error of the probabilities, 0..1 (lower = "
        "better calibrated).",
    )
    brier_ci_low: _interval("brier", "low") = None
    brier_ci_high: _interval("brier", "high") = None
    log_loss: float | None = Field(
        default=None, description="Mean log loss of the probabilities (nats, >= 0; lower = better)."
    )
    log_loss_ci_low: _interval("log_loss", "low") = None
    log_loss_ci_high: _interval("log_loss", "high") = None
    threshold: float | None = Field(
        default=None,
        description="The probability 0..1 above which a user is flagged, chosen on validation "
        "(max F1).",
    )
    f1: float | None = Field(
        default=None,
        description=f"F1 at the threshold (harmonic mean of precision and "
        f"recall): {UNIT_INTERVAL}.",
    )
    f1_ci_low: _interval("f1", "low") = None
    f1_ci_high: _interval("f1", "high") = None
    precision: float | None = Field(
        default=None,
        description=f"Share of flagged users that are positive, at the threshold: {UNIT_INTERVAL}.",
    )
    precision_ci_low: _interval("precision", "low") = None
    precision_ci_high: _interval("precision", "high") = None
    recall: float | None = Field(
        default=None,
        description=f"Share of positive users flagged, at the threshold: {UNIT_INTERVAL}.",
    )
    recall_ci_low: _interval("recall", "low") = None
    recall_ci_high: _interval("recall", "high") = None
    lift: float | None = Field(
        default=None, description="precision / positive_rate (ratio; 1 = no better than chance)."
    )
    lift_ci_low: _interval("lift", "low") = None
    lift_ci_high: _interval("lift", "high") = None
    auc_vs_ceiling: float | None = Field(
        default=None,
        description="roc_auc / the ground truth's roc_auc on the same split (ratio, 1 = as "
        "good as the true propensity); null without ground truth or for the bounce task.",
    )
    is_best: bool = Field(description="The model in service for its task.")
    params_json: str | None = Field(
        default=None,
        description="The hyper-parameters chosen on validation, as JSON.",
        examples=['{"C": 1.0}'],
    )
    n_train: int | None = Field(
        default=None, description="Labelled users in the train window (users)."
    )
    positives_train: int | None = Field(
        default=None, description="Positive labels in the train window (users)."
    )
    horizon_days: int | None = Field(
        default=None,
        description="The label window's length after each cutoff (days).",
        examples=[14],
    )
    model_version: str | None = Field(
        default=None,
        description="The run that trained the model (models live under models/<version>/).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "conversion",
                    "label": "purchase within 14 days",
                    "model": "xgboost",
                    "split": "test",
                    "status": "ok",
                    "note": None,
                    "n": 4999,
                    "positives": 612,
                    "positive_rate": 0.122424,
                    "roc_auc": 0.812345,
                    "roc_auc_ci_low": 0.794112,
                    "roc_auc_ci_high": 0.829871,
                    "pr_auc": 0.431207,
                    "pr_auc_ci_low": 0.398265,
                    "pr_auc_ci_high": 0.466813,
                    "threshold": 0.27,
                    "f1": 0.452381,
                    "precision": 0.401254,
                    "recall": 0.518301,
                    "lift": 3.277581,
                    "is_best": True,
                    "params_json": '{"max_depth": 4, "n_estimators": 300}',
                    "n_train": 4860,
                    "positives_train": 598,
                    "horizon_days": 14,
                    "model_version": "3f2a9c1e-7b1d-4c8e-9a51-2d0c6f1b7e44",
                }
            ]
        }
    )


# --- recommendations ---
InsightKind = Literal[
    "high_exit_page", "high_bounce_page", "funnel_dropoff", "never_recommended", "content_island"
]


class Recommendation(Row):
    rank: int = Field(description="1 = the best recommendation for the user.")
    page_id: str = Field(description="The recommended page (as in the catalogue).")
    title: str = Field(description="The page's title.")
    score: float = Field(
        description="The served method's score (unitless; higher = better; comparable only "
        "within one source)."
    )
    source: str = Field(
        description="'hybrid' (a user with any event), or 'segment_popularity' / "
        "'global_popularity' (a user without events: the cold-start chain)."
    )
    top_signal: str = Field(
        description="On hybrid rows the component that contributed most: 'content', "
        "'collaborative' or 'popularity'; otherwise equal to source."
    )
    reason: str = Field(description="Why this page, in a sentence with the components' shares.")
    generated_at: UtcDateTime = Field(
        description="Data as-of (UTC): midnight after the last day with events."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rank": 1,
                    "page_id": "p042",
                    "title": "Quiet 700 ANC headphones",
                    "score": 0.734512,
                    "source": "hybrid",
                    "top_signal": "collaborative",
                    "reason": "people who engaged with 'Quiet 500' also engaged with this "
                    "(content 0.08, collaborative 0.85, popularity 0.07)",
                    "generated_at": "2026-02-16T00:00:00Z",
                }
            ]
        }
    )


class UserRecommendations(BaseModel):
    user_id: str = Field(description="The user asked for.", examples=["u0000123"])
    data: list[Recommendation] = Field(description="The recommended pages, best first.")
    count: int = Field(description="Pages in data (at most the limit asked for).")


class SimilarPage(Row):
    rank: int = Field(description="1 = the most similar page.")
    similar_page_id: str = Field(description="The similar page (never the page itself).")
    similar_title: str = Field(description="Its title.")
    similarity: float = Field(
        description="Cosine similarity of the two pages' text embeddings, -1..1 (1 = same)."
    )
    same_category: bool = Field(description="True when both pages are in the same category.")


class PageInfo(Row):
    page_id: str = Field(description="The page's id in the catalogue.", examples=["p042"])
    url: str = Field(description="The page's URL path.", examples=["/c/headphones/quiet-700-anc"])
    title: str = Field(description="The page's title.")
    category: str = Field(description="The catalogue category.", examples=["Headphones"])
    page_type: str = Field(
        description="The kind of page, e.g. 'product', 'blog', 'help'.", examples=["product"]
    )
    price: float | None = Field(
        default=None,
        description="A product's price in the currency of the source (2 decimals); null for "
        "pages that sell nothing.",
    )


class PageRecommendations(BaseModel):
    page: PageInfo = Field(description="The page asked for, from the catalogue.")
    data: list[SimilarPage] = Field(
        description="Its most similar pages, most similar first; empty when the page has no "
        "text to compare."
    )
    count: int = Field(description="Pages in data (at most the limit asked for).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "page": {
                        "page_id": "p042",
                        "url": "/c/headphones/quiet-700-anc",
                        "title": "Quiet 700 ANC headphones",
                        "category": "Headphones",
                        "page_type": "product",
                        "price": 249.0,
                    },
                    "data": [
                        {
                            "rank": 1,
                            "similar_page_id": "p043",
                            "similar_title": "Quiet 500 headphones",
                            "similarity": 0.871204,
                            "same_category": True,
                        }
                    ],
                    "count": 1,
                }
            ]
        }
    )


class AdminInsight(Row):
    insight_id: str = Field(
        description="Stable id '<kind>:<subject>'.", examples=["high_exit_page:p042"]
    )
    kind: InsightKind = Field(
        description="high_exit_page / high_bounce_page: a busy page whose exit (bounce) rate "
        "is well above the site median; funnel_dropoff: a funnel step converting far worse "
        "than usual for a device, source or day; never_recommended: a candidate page in no "
        "user's list; content_island: a page with no close semantic neighbour."
    )
    severity: Severity = Field(description="'high', 'medium' or 'low'.")
    subject: str = Field(
        description="A page_id, or a funnel step 'from -> to [device=mobile]' / '[day=2026-02-03]'."
    )
    subject_title: str = Field(description="The page's title or the step in words.")
    metric: str = Field(
        description="The figure behind the finding: exit_rate, bounce_rate, step_conversion "
        "(fractions 0..1), times_recommended (lists), max_similarity (cosine -1..1)."
    )
    value: float = Field(description="The observed figure, in the metric's unit.")
    baseline: float = Field(
        description="What value is compared against (site median, usual rate, threshold), in "
        "the metric's unit."
    )
    volume: int = Field(
        description="Traffic behind the finding: sessions on the page (exit), sessions "
        "entering on it (bounce), sessions entering the funnel step, the page's views "
        "(never recommended); 0 for a content island."
    )
    details: str = Field(description="One sentence with the numbers.")
    suggested_action: str = Field(description="What to do about it, from its own numbers.")
    as_of: date = Field(description="The last day with events (UTC).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "insight_id": "high_exit_page:p042",
                    "kind": "high_exit_page",
                    "severity": "high",
                    "subject": "p042",
                    "subject_title": "Quiet 700 ANC headphones",
                    "metric": "exit_rate",
                    "value": 0.612345,
                    "baseline": 0.284512,
                    "volume": 1840,
                    "details": "61% of 1,840 sessions on the page end there (site median 28%).",
                    "suggested_action": "Add related products and a clear next step below the "
                    "fold: matching the median would keep about 600 sessions going.",
                    "as_of": "2026-02-15",
                }
            ]
        }
    )


def _rec_interval(metric: str, end: str) -> object:
    return Annotated[
        float | None,
        Field(description=f"Bootstrap 95% interval of {metric}, {end} end (users resampled)."),
    ]


class RecEvaluation(Row):
    """One method's offline ranking quality on the test window (knobs tuned on validation)."""

    method: str = Field(
        description="random, global_popularity, segment_popularity, content, item_knn, "
        "user_knn, ease or hybrid."
    )
    is_baseline: bool = Field(description="True for the random and popularity baselines.")
    status: Literal["ok", "insufficient data"] = Field(
        description="'insufficient data': too few evaluable users or k not below the candidate "
        "pages; the metrics are then null and the note gives the numbers."
    )
    k: int = Field(description="List length the metrics are computed at (pages).")
    candidate_pages: int = Field(description="Pages any method may recommend.")
    users_evaluated: int = Field(description="Test users with history and an unseen test page.")
    hr_at_k: float | None = Field(
        default=None, description="Hit rate: share of test users with a hit in the top k, 0..1."
    )
    ndcg_at_k: float | None = Field(
        default=None, description="Mean binary-relevance NDCG@k on the test window, 0..1."
    )
    ndcg_ci_low: float | None = Field(default=None, description="Bootstrap 95% interval, low.")
    ndcg_ci_high: float | None = Field(default=None, description="Bootstrap 95% interval, high.")
    recall_at_k: float | None = Field(
        default=None, description="Mean hits / relevant pages per test user, 0..1."
    )
    recall_ci_low: _rec_interval("recall_at_k", "low") = None
    recall_ci_high: _rec_interval("recall_at_k", "high") = None
    map_at_k: float | None = Field(default=None, description="Mean average precision@k, 0..1.")
    coverage: float | None = Field(
        default=None, description="Share of candidate pages shown, 0..1."
    )
    novelty: float | None = Field(
        default=None,
        description="Mean self-information of recommended pages, -log2(popularity share) "
        "(bits; higher = less popular pages).",
    )
    ndcg_minus_popularity_ci_low: float | None = Field(
        default=None, description="Paired bootstrap 95% interval of NDCG@k minus popularity's."
    )
    ndcg_minus_popularity_ci_high: _rec_interval("NDCG@k minus popularity's", "high") = None
    validation_ndcg_at_k: float | None = Field(
        default=None, description="NDCG@k on the validation window with the chosen knobs."
    )
    validation_users: int = Field(description="Evaluable users in the validation window.")
    half_life_days: float | None = Field(
        description="Chosen decay half-life of past events (days); null: no decay."
    )
    ease_lambda: float = Field(description="Chosen EASE regularization λ (unitless).")
    w_content: float = Field(description="The hybrid's weight of the content score, 0..1.")
    w_collaborative: float = Field(
        description="The hybrid's weight of the collaborative score, 0..1."
    )
    w_popularity: float = Field(description="The hybrid's weight of the popularity score, 0..1.")
    exclude: str = Field(description="Exclusion policy of evaluation and served lists alike.")
    is_served: bool = Field(description="The method user_recommendations serves.")
    selection: str | None = Field(default=None, description="Why the served method is served.")
    validation_start_ts: UtcDateTime = Field(description="Start of the validation window (UTC).")
    cutoff_ts: UtcDateTime = Field(
        description="Start of the test window (UTC); the test model trains on events before it."
    )
    test_end_ts: UtcDateTime = Field(description="End of the data (UTC).")
    note: str | None = Field(
        default=None,
        description="The status with its numbers, the bootstrap, how segments were obtained, "
        "other caveats.",
    )


# --- anomalies, summary ---
# Units: a metric's values (value, expected, lower, upper, observed, change) are in that
# metric's own unit: a count per day (sessions, events, ...), a fraction 0..1 (rates: 0.05 is
# 5%), money per day (revenue) or seconds (mean_session_duration_s).
class Anomaly(Row):
    day: date = Field(description="The scored day (a complete day, UTC).")
    dimension: str = Field(description="Scope: 'all', 'device', 'traffic_source' or 'segment'.")
    dimension_value: str = Field(description="The scope's value, e.g. 'mobile'; 'all' for all.")
    metric: str = Field(
        description="Monitored metric: a daily_trends column or a funnel step's conversion "
        "(funnel_product_view, funnel_add_to_cart, funnel_checkout_start, funnel_purchase)."
    )
    value: float = Field(description="The day's value, in the metric's unit.")
    expected: float = Field(description="The detector's expectation, in the metric's unit.")
    lower: float = Field(description="Lower end of the expected range, in the metric's unit.")
    upper: float = Field(description="Upper end of the expected range, in the metric's unit.")
    score: float = Field(
        description="Signed anomaly score (a z on the metric's noise model), |score| <= 50; "
        "negative = below expectation. 0 when the day has no score (see note)."
    )
    seasonal_score: float = Field(description="Evidence of the day alone (same scale).")
    level_score: float = Field(
        description="Evidence pooled over the last days (up to 14), for slow, lasting shifts "
        "(same scale)."
    )
    is_anomaly: bool = Field(description="Flagged: |score| passed the run's threshold.")
    direction: str = Field(description="'spike', 'drop', or 'none' when not flagged.")
    severity: str = Field(description="'low', 'medium', 'high', or 'none' when not flagged.")
    incident_id: str | None = Field(
        default=None, description="The incident this flagged point belongs to (null if none)."
    )
    note: str | None = Field(
        default=None,
        description="Why the day has no score (e.g. 'warm-up: 9 of 14 days of history', "
        "'no sessions that day'); null when it was scored.",
    )


class RecentAnomaly(Anomaly):
    as_of: date = Field(description="The latest complete day of the period.")


class Incident(Row):
    incident_id: str = Field(
        description="Stable id across nightly runs: '<start_day>-<metric>-<direction>'."
    )
    start_day: date = Field(description="First flagged day (inclusive).")
    end_day: date = Field(description="Last flagged day (inclusive).")
    days: int = Field(description="Calendar days from start_day to end_day, inclusive.")
    ongoing: bool = Field(description="True when end_day is the latest complete day.")
    headline_metric: str = Field(description="The metric that moved most (its column name).")
    headline_label: str = Field(description="The headline metric, readable.")
    direction: Literal["drop", "spike"] = Field(
        description="'drop': the headline metric fell below its expected range; 'spike': it "
        "rose above it."
    )
    headline_dimension: str = Field(description="Scope of the headline ('all' when overall).")
    headline_dimension_value: str = Field(description="Its value ('all' when overall).")
    expected: float = Field(
        description="The headline metric's expected level over the incident's days (its unit)."
    )
    observed: float = Field(
        description="The headline metric's observed level over the incident's days (its unit)."
    )
    relative_change: float = Field(
        description="observed / expected - 1, a fraction (-0.38 = 38% below expected)."
    )
    peak_score: float = Field(description="The strongest point's signed score (|score| <= 50).")
    severity: Severity = Field(
        description="By peak |score| / the run's threshold: 'low' (< 1.5), 'medium' (< 2.5), "
        "'high' (more)."
    )
    metrics: list[str] = Field(description="Every metric with a flagged point in the incident.")
    n_points: int = Field(description="Flagged day x scope x metric points in the incident.")
    n_scopes: int = Field(description="Distinct scopes (dimension values) involved.")
    top_contributor: str | None = Field(
        description="The dimension value with the largest share of the headline change, "
        "'dimension=value' (e.g. 'device=mobile'); null if none could be ranked."
    )
    top_share: float | None = Field(
        description="That value's share of the change within its dimension, 0..1."
    )
    description: str = Field(description="One sentence a person can read.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "incident_id": "2026-02-03-conversion_rate-drop",
                    "start_day": "2026-02-03",
                    "end_day": "2026-02-05",
                    "days": 3,
                    "ongoing": False,
                    "headline_metric": "conversion_rate",
                    "headline_label": "Conversion rate",
                    "direction": "drop",
                    "headline_dimension": "device",
                    "headline_dimension_value": "mobile",
                    "expected": 0.0342,
                    "observed": 0.0212,
                    "relative_change": -0.380117,
                    "peak_score": -6.42,
                    "severity": "high",
                    "metrics": ["conversion_rate", "funnel_purchase"],
                    "n_points": 7,
                    "n_scopes": 2,
                    "top_contributor": "device=mobile",
                    "top_share": 0.81,
                    "description": "Conversion rate dropped 38% below expected on "
                    "mobile for 3 days (2026-02-03 to 2026-02-05); "
                    "mobile carries 81% of the change.",
                }
            ]
        }
    )


class IncidentContributor(Row):
    incident_id: str = Field(description="The incident split (see Incident.incident_id).")
    metric: str = Field(description="The metric whose change is split.")
    dimension: str = Field(description="'device', 'traffic_source' or 'segment'.")
    dimension_value: str = Field(
        description="The device, traffic source or segment name.", examples=["mobile"]
    )
    expected: float = Field(description="That value's expected level (the metric's unit).")
    observed: float = Field(description="That value's observed level (the metric's unit).")
    change: float = Field(
        description="Its contribution to the change, in the metric's own unit (negative = down)."
    )
    share: float = Field(description="Its share of the change within the dimension, 0..1.")
    rank: int = Field(description="1 = the largest share within (metric, dimension).")


class SeriesDay(Row):
    day: date = Field(description="The UTC calendar day.")
    value: float = Field(description="The day's value, in the metric's unit.")
    expected: float = Field(description="Expectation, in the metric's unit.")
    lower: float = Field(description="Expected range, low end.")
    upper: float = Field(description="Expected range, high end.")
    is_anomaly: bool = Field(description="Flagged: |score| passed the run's threshold.")
    score: float = Field(description="Signed score, |score| <= 50.")
    note: str | None = Field(default=None, description="Why the day has no score, if so.")


class IncidentDetail(BaseModel):
    incident: Incident = Field(description="The incident's row, as in /api/anomalies/incidents.")
    contributors: list[IncidentContributor] = Field(
        description="Per metric x dimension, values ranked by share (headline metric first)."
    )
    points: list[Anomaly] = Field(
        description="The flagged anomaly_history points of the incident, oldest day first."
    )
    headline_series: list[SeriesDay] = Field(
        description="The headline metric in the headline scope, from 14 days before the "
        "incident to 7 days after it (or the latest day): the context to draw it in."
    )


class SensitivityRow(Row):
    threshold: float = Field(description="|score| that flags a point (the sensitivity).")
    incidents: int = Field(description="Incidents this threshold raises on the stored history.")
    incidents_per_30_days: float = Field(description="The same, per 30 scored days.")
    flagged_points: int = Field(description="Points it flags (day x scope x metric).")
    is_current: bool = Field(description="True for the threshold of the run that produced this.")


class Sensitivity(BaseModel):
    data: list[SensitivityRow] = Field(description="One row per threshold, lowest first.")
    count: int = Field(description="Thresholds simulated (rows in data).")
    current_threshold: float | None = Field(
        description="The threshold of the run that produced the snapshot (null if unknown)."
    )


class UnscoredScope(Row):
    dimension: str = Field(description="Scope: 'all', 'device', 'traffic_source' or 'segment'.")
    dimension_value: str = Field(description="The scope's value, e.g. 'mobile'; 'all' for all.")
    metric: str = Field(description="The monitored metric (as in Anomaly.metric).")
    days: int = Field(description="Days of this series in the range.")
    unscored_days: int = Field(description="Days without a score (each with a note).")
    first_unscored_day: date = Field(description="First day without a score in the range.")
    last_unscored_day: date = Field(description="Last day without a score in the range.")
    latest_day_unscored: bool = Field(description="True when the series' latest day is one.")
    reason: str = Field(description="The note of the latest unscored day: why it has no score.")


class Summary(BaseModel):
    as_of: date = Field(description="The last complete day the summary covers (UTC).")
    period_start: date = Field(description="First day of the period summarized (inclusive).")
    period_end: date = Field(description="Last day of the period summarized (inclusive).")
    mode: str = Field(description="'llm' (written by Gemini) or 'deterministic'.")
    model: str = Field(description="The Gemini model that wrote it, or 'none' (deterministic).")
    narrative: str = Field(description="The summary in Markdown; its numbers are those of facts.")
    facts: dict = Field(
        description="The numbers the narrative is grounded in (rates as fractions 0..1, "
        "revenue in the currency of the source, counts per period)."
    )
    source_tables: list[str] = Field(description="Tables the facts were read from.")
    missing_tables: list[str] = Field(
        description="Optional tables that were absent: the narrative says less about them."
    )
    fallback_reason: str = Field(
        description="Why the deterministic text was used (GEMINI_API_KEY not set, LLM "
        "disabled by config, Gemini failed, no data to summarise); '' when mode is 'llm'."
    )
    generated_at: UtcDateTime = Field(description="When the summary was written (UTC).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-02-15",
                    "period_start": "2026-02-09",
                    "period_end": "2026-02-15",
                    "mode": "deterministic",
                    "model": "none",
                    "narrative": "_Deterministic summary (no LLM): GEMINI_API_KEY is not set._\n\n"
                    "Sessions rose 4.2% to 9,812; conversion held at 3.4%.",
                    "facts": {
                        "period": {"start": "2026-02-09", "end": "2026-02-15", "days": 7},
                        "sessions": 9812,
                        "conversion_rate": 0.034,
                        "revenue": 35913.96,
                    },
                    "source_tables": ["daily_trends", "incidents", "segment_profiles"],
                    "missing_tables": [],
                    "fallback_reason": "GEMINI_API_KEY is not set",
                    "generated_at": "2026-02-16T02:14:07Z",
                }
            ]
        }
    )


# --- funnels, retention ---
FunnelStepName = Literal["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"]


class FunnelStep(Row):
    step_index: int = Field(description="1..5, the step's place in the funnel.")
    step: FunnelStepName = Field(description="The step.")
    sessions: int = Field(
        description="Sessions that reached the step in order (sessions): each step at or after "
        "the previous one."
    )
    step_conversion: float = Field(
        description=describe("funnel_step_conversion") + " A fraction 0..1; 1.0 at step 1."
    )
    overall_conversion: float = Field(
        description=describe("funnel_completion") + " A fraction 0..1."
    )
    drop_off: int = Field(description="Sessions lost since the previous step (sessions).")
    drop_off_rate: float = Field(description="1 - step_conversion, a fraction 0..1.")


class Funnel(BaseModel):
    start: date | None = Field(description="First day of the range (null: from the start).")
    end: date | None = Field(description="Last day of the range (null: to the end).")
    segment_id: int | None = Field(
        description="The segment the funnel is for; null for all sessions.", examples=[0]
    )
    steps: list[FunnelStep] = Field(description="The five steps in order; empty without data.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-02-09",
                    "end": "2026-02-15",
                    "segment_id": None,
                    "steps": [
                        {
                            "step_index": 1,
                            "step": "page_view",
                            "sessions": 9812,
                            "step_conversion": 1.0,
                            "overall_conversion": 1.0,
                            "drop_off": 0,
                            "drop_off_rate": 0.0,
                        },
                        {
                            "step_index": 2,
                            "step": "product_view",
                            "sessions": 6021,
                            "step_conversion": 0.613636,
                            "overall_conversion": 0.613636,
                            "drop_off": 3791,
                            "drop_off_rate": 0.386364,
                        },
                    ],
                }
            ]
        }
    )


class _FunnelDayKeys(Row):
    day: date = Field(description="The UTC calendar day the sessions started on.")


class FunnelDay(FunnelStep, _FunnelDayKeys):
    is_complete: bool = Field(description="False for a day the data ends inside (partial).")


class RetentionCohort(Row):
    cohort_week: date = Field(description="Monday of the ISO week the users were first seen.")
    weeks_since: int = Field(description="Weeks after the cohort week (0 = the cohort week).")
    cohort_size: int = Field(description="Users first seen in the cohort week (users).")
    active_users: int = Field(description="Of them, active in week cohort_week + weeks_since.")
    retention_rate: float = Field(description="active_users / cohort_size, a fraction 0..1.")
    is_complete: bool = Field(description="False when that activity week is not complete.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cohort_week": "2026-01-05",
                    "weeks_since": 2,
                    "cohort_size": 412,
                    "active_users": 133,
                    "retention_rate": 0.322816,
                    "is_complete": True,
                }
            ]
        }
    )


class LifecycleWeek(Row):
    week_start: date = Field(description="Monday of the ISO week.")
    state: Literal["new", "returning", "resurrecting", "dormant"] = Field(
        description="new: first seen this week; returning: active this and last week; "
        "resurrecting: active this week, not last week, seen before; dormant: active last "
        "week, not this week."
    )
    users: int = Field(description="Users in that state that week (users).")
    signed_users: int = Field(description="users, negative for dormant (for a stacked chart).")
    quick_ratio: float = Field(
        description="(new + resurrecting) / dormant users of the week (ratio; > 1 = growing); "
        "0.0 when no user went dormant."
    )
    is_complete: bool = Field(description="False when the week is not complete.")


# --- users ---
class User(Row):
    user_id: str = Field(description="The user's id as in the events.")
    signup_date: date | None = Field(description="Sign-up day (else the first day seen).")
    country: str | None = Field(description="Country; 'unknown' when the source has none.")
    device: str | None = Field(description="The device of the user's first event.")
    traffic_source: str | None = Field(description="The traffic source of their first event.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u0000123",
                    "signup_date": "2026-01-07",
                    "country": "DE",
                    "device": "mobile",
                    "traffic_source": "organic",
                }
            ]
        }
    )


class Activity(Row):
    event_ts: UtcDateTime = Field(description="When the event happened (UTC).")
    event_type: str = Field(
        description="page_view, click, scroll, search, add_to_cart, checkout_start or purchase."
    )
    page_id: str | None = Field(description="The page the event happened on.")
    page_title: str | None = Field(description="That page's title.")
    session_id: str | None = Field(description="The session the event belongs to.")
    device: str | None = Field(description="The device of the event.")
    revenue: float | None = Field(
        description="A purchase's revenue in the currency of the source (2 decimals); null "
        "for other events."
    )


class UserPrediction(Row):
    conversion_probability: float | None = Field(
        description=describe("purchase_within_horizon") + " " + SCORE_NOTE
    )
    conversion_rank: int | None = Field(default=None, description=ProbabilityRank)
    at_risk_probability: float | None = Field(
        description=describe("next_session_bounce") + " A probability 0..1. " + SCORE_NOTE
    )
    at_risk: bool | None = Field(
        default=None,
        description="at_risk_probability >= the bounce model's threshold. " + SCORE_NOTE,
    )
    at_risk_rank: int | None = Field(
        default=None, description="1 = the most at risk; null when the bounce task is not scored."
    )
    reasons: list[str] = Field(description="The conversion model's reasons.")
    at_risk_reasons: list[str] = Field(
        default_factory=list, description="The bounce model's reasons."
    )
    conversion_model: str | None = Field(default=None, description=ModelName)
    bounce_model: str | None = Field(default=None, description=ModelName)
    conversion_note: str | None = Field(
        default=None, description="Why no conversion score (insufficient data)."
    )
    bounce_note: str | None = Field(
        default=None, description="Why no at-risk score (insufficient data)."
    )
    model_version: str = ModelVersion
    scored_at: UtcDateTime = ScoredAt


class UserDetail(BaseModel):
    user: User = Field(description="The user's profile from the users table.")
    segment: UserSegment | None = Field(description="Null before segmentation has run.")
    predictions: UserPrediction | None = Field(description="Null when the user was not scored.")
    recent_activity: list[Activity] = Field(description="The user's latest events, newest first.")
    recommendations: list[Recommendation] = Field(
        description="The top 5 recommended pages; empty without recommendations."
    )
