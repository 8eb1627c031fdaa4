"""What the platform's headline numbers mean, defined once: trend metrics, KPIs, bounce, conversion.

Dagster-free. The pipeline (``core/summary.py``), the API and the dashboard import these names
instead of keeping their own lists, so a label, a KPI or a rate can only mean one thing.

Definitions used in code (docs/tables/trends.md and docs/tables/models.md say the same):

- A **session bounces** (``sessions.is_bounce``, the trends' ``bounced_sessions`` and
  ``bounce_rate``) when it has exactly one page view and no engaged event (scroll does not
  count as engagement). See :data:`SESSION_BOUNCE`.
- A **user's bounce rate** (``user_features.bounce_rate``) and the bounce model's label
  (``next_session_bounced``) use the same session bounce.
- A **session converts** (``sessions.converted``, ``converted_sessions``, the trends'
  ``conversion_rate``) when it has at least one purchase. See :data:`SESSION_CONVERSION`.
- A **user converts** (the conversion model's label) when they purchase at least once within
  the label horizon after the cutoff. See :data:`USER_CONVERSION`.
- Rates are recomputed from summed numerators and denominators, never averaged, and a rate
  with a zero denominator is 0.0.
"""

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

SESSION_BOUNCE = "a session with exactly one page view and no engaged event (scroll is not one)"
SESSION_CONVERSION = "a session with at least one purchase"
USER_CONVERSION = "a user with at least one purchase within the label horizon after the cutoff"

# The metric columns shared by daily_trends, weekly_trends and segment_trends, in table order.
TREND_COLUMNS: tuple[str, ...] = (
    "active_users",
    "new_users",
    "returning_users",
    "sessions",
    "converted_sessions",
    "bounced_sessions",
    "events",
    "page_views",
    "purchases",
    "revenue",
    "conversion_rate",
    "bounce_rate",
    "mean_session_duration_s",
    "pages_per_session",
)
# The trend metrics a person can pick (charts, anomalies), with their labels, in display order.
TREND_METRICS: dict[str, str] = {
    "active_users": "Active users",
    "sessions": "Sessions",
    "page_views": "Page views",
    "events": "Events",
    "conversion_rate": "Conversion rate",
    "bounce_rate": "Bounce rate",
    "revenue": "Revenue",
    "purchases": "Purchases",
    "new_users": "New users",
    "returning_users": "Returning users",
    "mean_session_duration_s": "Mean session duration (s)",
    "pages_per_session": "Pages per session",
}

# Funnel step conversion (sessions reaching a step / sessions reaching the step before, from
# funnel_daily and funnel_segments), monitored by the anomaly detector like the trend metrics.
FUNNEL_STEP_METRICS: dict[str, str] = {
    "funnel_product_view": "Funnel: page view to product view",
    "funnel_add_to_cart": "Funnel: product view to add to cart",
    "funnel_checkout_start": "Funnel: add to cart to checkout",
    "funnel_purchase": "Funnel: checkout to purchase",
}
# The metrics the anomaly detector monitors, with their labels.
ANOMALY_METRIC_LABELS: dict[str, str] = {
    **{
        m: TREND_METRICS[m]
        for m in (
            "active_users",
            "sessions",
            "page_views",
            "events",
            "conversion_rate",
            "bounce_rate",
            "revenue",
            "mean_session_duration_s",
        )
    },
    **FUNNEL_STEP_METRICS,
}

# --- KPIs over a period of complete days ---

# The daily_trends columns ``period_kpis`` reads (plus ``day``): counts and the mean duration;
# the rates are recomputed from the counts, never averaged.
KPI_INPUT_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in TREND_COLUMNS
    if c not in ("returning_users", "conversion_rate", "bounce_rate", "pages_per_session")
)
# The headline KPIs (keys of ``period_kpis``) with their labels, in display order.
HEADLINE_KPIS: dict[str, str] = {
    "active_users": "Daily active users",
    "sessions": "Sessions",
    "conversion_rate": "Conversion rate",
    "bounce_rate": "Bounce rate",
    "revenue": "Revenue",
    "new_users": "New users",
}


def overall_complete_days(daily_trends: pl.DataFrame) -> pl.DataFrame:
    """The rows of daily_trends over all users for complete days, oldest first."""
    return daily_trends.filter((pl.col("dimension") == "all") & pl.col("is_complete")).sort("day")


def split_periods(days_frame: pl.DataFrame, days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The last ``days`` days up to the latest ``day`` in the frame, and the ``days`` before."""
    last = days_frame["day"].max()
    start = last - timedelta(days=days - 1)
    previous_start = start - timedelta(days=days)
    current = days_frame.filter(pl.col("day") >= start)
    previous = days_frame.filter((pl.col("day") >= previous_start) & (pl.col("day") < start))
    return current, previous


def period_kpis(days_frame: pl.DataFrame) -> dict[str, float]:
    """Unrounded KPIs of a period, one row per day (``KPI_INPUT_COLUMNS``); {} for no day.

    Keys: ``days``, the summed counts (sessions, events, page_views, purchases, revenue,
    new_users), ``active_users`` (the mean per day: a user active on two days is one user each
    day), and ``conversion_rate``, ``bounce_rate`` and ``mean_session_duration_s`` weighted by
    sessions (0.0 with no session).
    """
    if days_frame.height == 0:
        return {}
    sums = days_frame.select(
        pl.col("sessions").sum(),
        pl.col("converted_sessions").sum(),
        pl.col("bounced_sessions").sum(),
        pl.col("events").sum(),
        pl.col("page_views").sum(),
        pl.col("purchases").sum(),
        pl.col("revenue").sum(),
        pl.col("new_users").sum(),
        pl.col("active_users").mean(),
        (pl.col("mean_session_duration_s") * pl.col("sessions")).sum().alias("duration_s"),
    ).row(0, named=True)
    sessions = sums["sessions"] or 0

    def per_session(total: float | None) -> float:
        return (total or 0) / sessions if sessions else 0.0

    return {
        "days": days_frame.height,
        "sessions": sessions,
        "events": sums["events"] or 0,
        "page_views": sums["page_views"] or 0,
        "purchases": sums["purchases"] or 0,
        "revenue": float(sums["revenue"] or 0.0),
        "new_users": sums["new_users"] or 0,
        "active_users": float(sums["active_users"] or 0.0),
        "conversion_rate": per_session(sums["converted_sessions"]),
        "bounce_rate": per_session(sums["bounced_sessions"]),
        "mean_session_duration_s": per_session(sums["duration_s"]),
    }


@dataclass(frozen=True)
class Kpi:
    metric: str
    label: str
    value: float
    previous: float | None

    @property
    def delta(self) -> float | None:
        if self.previous is None:
            return None
        return self.value - self.previous

    @property
    def delta_pct(self) -> float | None:
        if self.previous in (None, 0):
            return None
        return (self.value - self.previous) / abs(self.previous)


@dataclass(frozen=True)
class KpiPeriod:
    start: date
    end: date
    previous_start: date | None
    kpis: tuple[Kpi, ...]


def headline_kpis(days_frame: pl.DataFrame, days: int = 7) -> KpiPeriod | None:
    """The headline KPIs of the last ``days`` days against the ``days`` before.

    ``days_frame`` holds one row per complete day over all users (``overall_complete_days``).
    The previous figures are left out unless the previous period is as long as the current one,
    so a half-covered week is never compared with a full one.
    """
    if days_frame.is_empty():
        return None
    current, previous = split_periods(days_frame, days)
    now = period_kpis(current)
    before = period_kpis(previous) if previous.height == current.height else None
    return KpiPeriod(
        start=current["day"].min(),
        end=days_frame["day"].max(),
        previous_start=previous["day"].min() if before else None,
        kpis=tuple(
            Kpi(metric, label, float(now[metric]), float(before[metric]) if before else None)
            for metric, label in HEADLINE_KPIS.items()
        ),
    )


# --- the glossary: one name and one definition per measure (docs/metrics.md) ---


@dataclass(frozen=True)
class Definition:
    """A measure as people read it: its name, what it counts, at which level, in which unit."""

    name: str
    level: str  # session | user | funnel step | day
    unit: str
    definition: str


GLOSSARY: dict[str, Definition] = {
    "session_conversion_rate": Definition(
        "Session conversion rate",
        "session",
        "% of sessions",
        f"Share of sessions that converted: {SESSION_CONVERSION}. The trends' conversion_rate "
        "and the summary's conversion.",
    ),
    "buyer_share": Definition(
        "Buyer share",
        "user",
        "% of users",
        "Share of a group's users with at least one purchase in the feature lookback window "
        "(segment_profiles.buyer_share). A user-level rate: not comparable with the session "
        "conversion rate.",
    ),
    "purchase_within_horizon": Definition(
        "Purchase within the horizon",
        "user",
        "probability",
        f"The conversion model's label and prediction: {USER_CONVERSION} (14 days by default).",
    ),
    "bounce_rate": Definition(
        "Bounce rate",
        "session",
        "% of sessions",
        f"Share of sessions that bounced: {SESSION_BOUNCE}. The same bounce in the trends, "
        "in user_features.bounce_rate (per user, over their sessions) and in the bounce model.",
    ),
    "next_session_bounce": Definition(
        "Next session bounces",
        "user",
        "probability",
        "The bounce model's label and prediction: the user's next session after the cutoff "
        "bounces (bounce as above).",
    ),
    "funnel_step_conversion": Definition(
        "Step conversion",
        "funnel step",
        "% of the previous step",
        "Sessions that reached a funnel step as a share of those that reached the step before.",
    ),
    "funnel_completion": Definition(
        "Funnel completion",
        "funnel step",
        "% of the first step",
        "Sessions that reached a step as a share of sessions that started the funnel; at the "
        "purchase step, the funnel's overall conversion.",
    ),
    "active_users": Definition(
        "Active users", "day", "users", "Distinct users with at least one event that day."
    ),
    "revenue": Definition(
        "Revenue",
        "day",
        "currency of the source",
        "Sum of the purchase events' revenue; no currency conversion.",
    ),
}


def describe(term: str) -> str:
    """``GLOSSARY[term]`` as one line for tooltips and API field descriptions."""
    d = GLOSSARY[term]
    return f"{d.name} ({d.unit}): {d.definition}"
