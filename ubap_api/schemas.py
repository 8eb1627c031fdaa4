"""Response models: one per resource, lists wrapped as {data, count, total, limit, offset}.

Columns follow docs/tables/*.md (the producers' contract).
"""

from datetime import UTC, date, datetime
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
    data: list[T]
    count: int = Field(description="Rows in this page.")
    total: int = Field(description="Rows matching the filters, all pages.")
    limit: int
    offset: int


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
    snapshot_id: str | None
    detail: str = Field(default="", description="What is wrong and how to fix it, if anything.")
    not_refreshed: NotRefreshed = {}


class CheckResult(Row):
    asset_key: str
    check_name: str
    status: Literal["passed", "failed", "skipped"] = Field(
        description="skipped: the data could not be scored (too little of it, no ground truth); "
        "the description says why. A skipped check is neither passed nor failed."
    )
    passed: bool | None = Field(description="Null when the check was skipped.")
    severity: str | None = Field(description="ERROR or WARN; null when skipped.")
    blocking: bool
    description: str
    evaluated_at: UtcDateTime
    run_id: str


class Meta(BaseModel):
    snapshot_id: str
    run_id: str | None
    materialized_at: UtcDateTime | None
    age_seconds: float | None = Field(description="Seconds since the snapshot was published.")
    data_start: date | None
    data_end: date | None
    tables: list[str]
    missing_tables: list[str]
    not_refreshed: NotRefreshed
    checks_total: int
    checks_failed: int
    checks_skipped: int = Field(description="Checks that could not score this data (see each).")
    checks: list[CheckResult]


# --- trends ---
class TrendMetrics(Row):
    active_users: int
    new_users: int
    returning_users: int
    sessions: int
    converted_sessions: int
    bounced_sessions: int
    events: int
    page_views: int
    purchases: int
    revenue: float = Field(description=describe("revenue"))
    conversion_rate: float = Field(description=describe("session_conversion_rate") + " 0..1.")
    bounce_rate: float = Field(description=describe("bounce_rate") + " 0..1.")
    mean_session_duration_s: float
    pages_per_session: float
    is_complete: bool


# Keys first in the JSON: pydantic orders fields from the last base to the class itself.
class _DailyKeys(Row):
    day: date
    dimension: str
    dimension_value: str


class DailyTrend(TrendMetrics, _DailyKeys):
    pass


class _WeeklyKeys(Row):
    week_start: date
    dimension: str
    dimension_value: str
    days_with_data: int


class WeeklyTrend(TrendMetrics, _WeeklyKeys):
    pass


class _SegmentKeys(Row):
    day: date
    segment_id: str
    segment_name: str


class SegmentTrend(TrendMetrics, _SegmentKeys):
    pass


# --- segments ---
class SegmentProfile(Row):
    segment_id: int
    segment_name: str
    users: int
    share: float = Field(description="Share of all users in this segment (0..1).")
    buyer_share: float = Field(description=describe("buyer_share") + " 0..1.")
    sessions: float
    pages_per_session: float
    avg_session_minutes: float
    bounce_rate: float = Field(
        description="Mean over the segment's users of each user's "
        "bounce rate (bounced sessions / sessions; bounce as in the glossary). 0..1."
    )
    product_share: float
    blog_share: float
    help_share: float
    add_to_cart_rate: float
    purchases: float
    revenue: float
    recency_days: float
    active_days: float


class SegmentShare(Row):
    segment_id: int
    segment_name: str
    users: int
    share: float = Field(description="Share of all users in this segment (0..1).")
    buyer_share: float = Field(description=describe("buyer_share") + " 0..1.")


class SegmentSummary(BaseModel):
    k: int
    users: int
    silhouette: float
    davies_bouldin: float
    ward_silhouette: float | None
    ward_agreement_ari: float | None
    persona_ari: float | None = Field(
        description="Adjusted Rand index of the segments against the synthetic generator's "
        "latent personas (-1..1, 1 = the same grouping); null without ground truth."
    )
    persona_note: str | None = Field(
        default=None, description="Why persona_ari is null (e.g. ingested data has no personas)."
    )
    run_id: str | None
    segments: list[SegmentShare]


class UserSegment(Row):
    segment_id: int
    segment_name: str
    distance_to_centroid: float | None = None


# --- predictions ---
class SegmentPrediction(Row):
    segment_id: str
    segment_name: str | None
    users: int
    mean_conversion_probability: float | None = Field(
        description="Mean P(purchase within the horizon); null when no conversion model is "
        "served (insufficient data)."
    )
    mean_at_risk_probability: float | None = Field(
        description="Mean P(next session bounces); null when no bounce model is served."
    )
    at_risk_users: int
    at_risk_share: float
    expected_converters: float | None = None


SCORE_NOTE = "Null when the task serves no model (insufficient data): see the task's note."


class ScoredUser(Row):
    user_id: str
    conversion_probability: float | None = Field(
        description=describe("purchase_within_horizon") + " " + SCORE_NOTE
    )
    conversion_rank: int | None = None
    at_risk_probability: float | None = Field(
        description=describe("next_session_bounce") + " " + SCORE_NOTE
    )
    at_risk: bool | None = Field(
        description="at_risk_probability >= the bounce model's threshold (chosen on the "
        "validation window). " + SCORE_NOTE
    )
    at_risk_rank: int | None = None
    reasons: list[str] = Field(
        description="Up to three plain-word reasons from the model that scored this list: the "
        "conversion model's on high-value lists, the bounce model's on the at-risk list."
    )
    reason_method: str | None = Field(
        default=None, description="How the reasons were computed (the contribution method)."
    )
    segment_id: str | None = None
    segment_name: str | None = None
    conversion_model: str | None = None
    bounce_model: str | None = None
    model_version: str
    scored_at: UtcDateTime


class ScoredPage(Page[ScoredUser]):
    note: str | None = Field(
        default=None,
        description="Why the list is empty: its task serves no model (insufficient data, with "
        "the numbers). Null when the task is scored.",
    )


class ModelMetric(Row):
    task: str
    label: str | None = Field(
        default=None, description="The label in words, e.g. 'purchase within 14 days'."
    )
    model: str | None = Field(description="Null on a task's 'insufficient data' rows.")
    split: Literal["validation", "test"] | None = Field(
        default=None,
        description="'validation': chose the model, its hyper-parameters and threshold; "
        "'test': the later, disjoint window that reports.",
    )
    status: str = Field(default="ok", description="'ok' or 'insufficient data'.")
    note: str | None = Field(default=None, description="Why a task has insufficient data.")
    n: int | None = Field(default=None, description="Labelled users in the window.")
    positives: int | None = Field(default=None, description="Positive labels among them.")
    positive_rate: float | None = None
    roc_auc: float | None = None
    roc_auc_ci_low: float | None = Field(default=None, description="Bootstrap 95% interval.")
    roc_auc_ci_high: float | None = None
    pr_auc: float | None = None
    pr_auc_ci_low: float | None = None
    pr_auc_ci_high: float | None = None
    brier: float | None = None
    brier_ci_low: float | None = None
    brier_ci_high: float | None = None
    log_loss: float | None = None
    log_loss_ci_low: float | None = None
    log_loss_ci_high: float | None = None
    threshold: float | None = Field(default=None, description="Chosen on validation (F1).")
    f1: float | None = None
    f1_ci_low: float | None = None
    f1_ci_high: float | None = None
    precision: float | None = None
    precision_ci_low: float | None = None
    precision_ci_high: float | None = None
    recall: float | None = None
    recall_ci_low: float | None = None
    recall_ci_high: float | None = None
    lift: float | None = Field(default=None, description="Precision / positive rate.")
    lift_ci_low: float | None = None
    lift_ci_high: float | None = None
    auc_vs_ceiling: float | None = None
    is_best: bool = Field(description="The model in service for its task.")
    params_json: str | None = None
    n_train: int | None = None
    positives_train: int | None = None
    horizon_days: int | None = None
    model_version: str | None = None


# --- recommendations ---
class Recommendation(Row):
    rank: int
    page_id: str
    title: str
    score: float
    source: str
    top_signal: str
    reason: str
    generated_at: UtcDateTime


class UserRecommendations(BaseModel):
    user_id: str
    data: list[Recommendation]
    count: int


class SimilarPage(Row):
    rank: int
    similar_page_id: str
    similar_title: str
    similarity: float
    same_category: bool


class PageInfo(Row):
    page_id: str
    url: str
    title: str
    category: str
    page_type: str
    price: float | None = None


class PageRecommendations(BaseModel):
    page: PageInfo
    data: list[SimilarPage]
    count: int


class AdminInsight(Row):
    insight_id: str
    kind: str
    severity: str
    subject: str
    subject_title: str
    metric: str
    value: float
    baseline: float
    volume: int
    details: str
    suggested_action: str
    as_of: date


class RecEvaluation(Row):
    method: str
    is_baseline: bool
    k: int
    hr_at_k: float
    ndcg_at_k: float
    recall_at_k: float
    map_at_k: float
    coverage: float
    novelty: float
    users_evaluated: int
    cutoff_ts: UtcDateTime
    test_end_ts: UtcDateTime
    note: str | None = None


# --- anomalies, summary ---
# Units: a metric's values (value, expected, lower, upper, observed, change) are in that
# metric's own unit: a count per day (sessions, events, ...), a fraction 0..1 (rates: 0.05 is
# 5%), money per day (revenue) or seconds (mean_session_duration_s).
Severity = Literal["low", "medium", "high"]


class Anomaly(Row):
    day: date = Field(description="The scored day (a complete day, UTC).")
    dimension: str = Field(description="Scope: 'all', 'device', 'traffic_source' or 'segment'.")
    dimension_value: str = Field(description="The scope's value, e.g. 'mobile'; 'all' for all.")
    metric: str = Field(description="Monitored metric (daily_trends column or funnel step).")
    value: float = Field(description="The day's value, in the metric's unit.")
    expected: float = Field(description="The detector's expectation, in the metric's unit.")
    lower: float = Field(description="Lower end of the expected range, in the metric's unit.")
    upper: float = Field(description="Upper end of the expected range, in the metric's unit.")
    score: float = Field(
        description="Signed anomaly score (a z on the metric's noise model), |score| <= 50; "
        "negative = below expectation. 0 when the day has no score (see note)."
    )
    seasonal_score: float = Field(description="The seasonal detector's score (same scale).")
    level_score: float = Field(description="The level detector's score (same scale).")
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
    direction: Literal["drop", "spike"]
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
    severity: Severity
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


class IncidentContributor(Row):
    incident_id: str
    metric: str = Field(description="The metric whose change is split.")
    dimension: str = Field(description="'device', 'traffic_source' or 'segment'.")
    dimension_value: str
    expected: float = Field(description="That value's expected level (the metric's unit).")
    observed: float = Field(description="That value's observed level (the metric's unit).")
    change: float = Field(
        description="Its contribution to the change, in the metric's own unit (negative = down)."
    )
    share: float = Field(description="Its share of the change within the dimension, 0..1.")
    rank: int = Field(description="1 = the largest share within (metric, dimension).")


class SeriesDay(Row):
    day: date
    value: float = Field(description="The day's value, in the metric's unit.")
    expected: float = Field(description="Expectation, in the metric's unit.")
    lower: float = Field(description="Expected range, low end.")
    upper: float = Field(description="Expected range, high end.")
    is_anomaly: bool
    score: float = Field(description="Signed score, |score| <= 50.")
    note: str | None = Field(default=None, description="Why the day has no score, if so.")


class IncidentDetail(BaseModel):
    incident: Incident
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
    count: int
    current_threshold: float | None = Field(
        description="The threshold of the run that produced the snapshot (null if unknown)."
    )


class UnscoredScope(Row):
    dimension: str
    dimension_value: str
    metric: str
    days: int = Field(description="Days of this series in the range.")
    unscored_days: int = Field(description="Days without a score (each with a note).")
    first_unscored_day: date
    last_unscored_day: date
    latest_day_unscored: bool = Field(description="True when the series' latest day is one.")
    reason: str = Field(description="The note of the latest unscored day: why it has no score.")


class Summary(BaseModel):
    as_of: date
    period_start: date
    period_end: date
    mode: str = Field(description="'llm' (written by Gemini) or 'deterministic'.")
    model: str
    narrative: str
    facts: dict = Field(description="The numbers the narrative is grounded in.")
    source_tables: list[str]
    missing_tables: list[str]
    fallback_reason: str
    generated_at: UtcDateTime


# --- funnels, retention ---
class FunnelStep(Row):
    step_index: int
    step: str
    sessions: int
    step_conversion: float
    overall_conversion: float
    drop_off: int
    drop_off_rate: float


class Funnel(BaseModel):
    start: date | None
    end: date | None
    segment_id: str
    steps: list[FunnelStep]


class _FunnelDayKeys(Row):
    day: date


class FunnelDay(FunnelStep, _FunnelDayKeys):
    is_complete: bool


class RetentionCohort(Row):
    cohort_week: date
    weeks_since: int
    cohort_size: int
    active_users: int
    retention_rate: float
    is_complete: bool


class LifecycleWeek(Row):
    week_start: date
    state: str
    users: int
    signed_users: int
    quick_ratio: float
    is_complete: bool


# --- users ---
class User(Row):
    user_id: str
    signup_date: date | None
    country: str | None
    device: str | None
    traffic_source: str | None


class Activity(Row):
    event_ts: UtcDateTime
    event_type: str
    page_id: str | None
    page_title: str | None
    session_id: str | None
    device: str | None
    revenue: float | None


class UserPrediction(Row):
    conversion_probability: float | None = Field(
        description=describe("purchase_within_horizon") + " " + SCORE_NOTE
    )
    conversion_rank: int | None = None
    at_risk_probability: float | None = Field(
        description=describe("next_session_bounce") + " " + SCORE_NOTE
    )
    at_risk: bool | None = None
    at_risk_rank: int | None = None
    reasons: list[str] = Field(description="The conversion model's reasons.")
    at_risk_reasons: list[str] = Field(
        default_factory=list, description="The bounce model's reasons."
    )
    conversion_model: str | None = None
    bounce_model: str | None = None
    conversion_note: str | None = Field(
        default=None, description="Why no conversion score (insufficient data)."
    )
    bounce_note: str | None = Field(
        default=None, description="Why no at-risk score (insufficient data)."
    )
    model_version: str
    scored_at: UtcDateTime


class UserDetail(BaseModel):
    user: User
    segment: UserSegment | None = Field(description="Null before segmentation has run.")
    predictions: UserPrediction | None = Field(description="Null when the user was not scored.")
    recent_activity: list[Activity]
    recommendations: list[Recommendation]
