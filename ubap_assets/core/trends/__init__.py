"""Trends, funnels, retention and lifecycle computed in DuckDB SQL.

Dagster-free. ``build_sessions`` (``core/daily.py``) makes the pass over the raw ``events`` and
writes the day-partitioned ``sessions`` table (one row per session, ~10x smaller); every other
function aggregates that table (or ``user_daily``) through a DuckDB connection and returns a
polars frame. Table names come from the table contract, never from outside, so they are the
only thing formatted into the SQL.

Conventions (docs/tables/trends.md): a session and all its events belong to the day of its
first event and take that event's device and traffic source; a bounce is a session with exactly
one page_view and no event other than scroll; a user is new on the day (week) of their first
session; rates with a zero denominator are 0.0; every calendar day between the first and the
last day is present (zeros for a day without events).

One module per table family; this package re-exports their public names so that callers write
``trends.daily_trends(con)`` without knowing which module holds it:

- ``bounds``: what the data covers and which days and weeks are complete;
- ``segments``: the segment ids and names the per-segment tables join;
- ``period_metrics``: daily, weekly and per-segment trends, and their reconciliation;
- ``funnels``: the ordered funnel per day (and device, traffic source, segment);
- ``retention``: weekly cohorts and lifecycle states.
"""

from ubap_assets.core.daily import build_sessions
from ubap_assets.core.trends.bounds import (
    COMPLETE_FROM_HOUR,
    Bounds,
    data_bounds,
    settle_completeness,
)
from ubap_assets.core.trends.funnels import (
    FUNNEL_STEPS,
    funnel_daily,
    funnel_dimensions,
    funnel_segments,
)
from ubap_assets.core.trends.period_metrics import (
    DIMENSIONS,
    METRICS,
    daily_trends,
    reconcile_daily,
    segment_trends,
    weekly_trends,
)
from ubap_assets.core.trends.retention import (
    LIFECYCLE_STATES,
    lifecycle_weekly,
    retention_cohorts,
)
from ubap_assets.core.trends.segments import (
    ALL_SEGMENT_ID,
    ALL_SEGMENT_NAME,
    segment_labels,
    segment_names,
    use_segments,
)

__all__ = [
    "ALL_SEGMENT_ID",
    "ALL_SEGMENT_NAME",
    "COMPLETE_FROM_HOUR",
    "DIMENSIONS",
    "FUNNEL_STEPS",
    "LIFECYCLE_STATES",
    "METRICS",
    "Bounds",
    "build_sessions",
    "daily_trends",
    "data_bounds",
    "funnel_daily",
    "funnel_dimensions",
    "funnel_segments",
    "lifecycle_weekly",
    "reconcile_daily",
    "retention_cohorts",
    "segment_labels",
    "segment_names",
    "segment_trends",
    "settle_completeness",
    "use_segments",
    "weekly_trends",
]
