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
    pass


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
    """One method's offline ranking quality on the test window (knobs tuned on validation)."""

    method: str
    is_baseline: bool
    status: Literal["ok", "insufficient data"] = Field(
        description="'insufficient data': too few evaluable users or k not below the candidate "
        "pages; the metrics are then null and the note gives the numbers."
    )
    k: int
    candidate_pages: int = Field(description="Pages any method may recommend.")
    users_evaluated: int = Field(description="Test users with history and an unseen test page.")
    hr_at_k: float | None = None
    ndcg_at_k: float | None = Field(default=None, description="Mean NDCG@k on the test window.")
    ndcg_ci_low: float | None = Field(default=None, description="Bootstrap 95% interval, low.")
    ndcg_ci_high: float | None = Field(default=None, description="Bootstrap 95% interval, high.")
    recall_at_k: float | None = None
    recall_ci_low: float | None = None
    recall_ci_high: float | None = None
    map_at_k: float | None = None
    coverage: float | None = Field(
        default=None, description="Share of candidate pages shown, 0..1."
    )
    novelty: float | None = None
    ndcg_minus_popularity_ci_low: float | None = Field(
        default=None, description="Paired bootstrap 95% interval of NDCG@k minus popularity's."
    )
    ndcg_minus_popularity_ci_high: float | None = None
    validation_ndcg_at_k: float | None = Field(
        default=None, description="NDCG@k on the validation window with the chosen knobs."
    )
    validation_users: int
    half_life_days: float | None = Field(description="Chosen decay half-life; null: no decay.")
    ease_lambda: float
    w_content: float
    w_collaborative: float
    w_popularity: float
    exclude: str = Field(description="Exclusion policy of evaluation and served lists alike.")
    is_served: bool = Field(description="The method user_recommendations serves.")
    selection: str | None = Field(default=None, description="Why the served method is served.")
    validation_start_ts: UtcDateTime
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
    user: User = Field(description="The user's profile from the users table.")
    segment: UserSegment | None = Field(description="Null before segmentation has run.")
    predictions: UserPrediction | None = Field(description="Null when the user was not scored.")
    recent_activity: list[Activity] = Field(description="The user's latest events, newest first.")
    recommendations: list[Recommendation] = Field(
        description="The top 5 recommended pages; empty without recommendations."
    )
