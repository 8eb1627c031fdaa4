"""Anomalies found by the detectors: incidents, their root causes, flagged points, the
sensitivity simulation and what could not be scored."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import Path, Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import not_found, page_of, records
from ubap_api.schemas import (
    NOT_FOUND,
    Anomaly,
    IncidentDetail,
    Page,
    RecentAnomaly,
    Sensitivity,
    Severity,
    UnscoredScope,
)
from ubap_api.schemas import Incident as IncidentRow

router = guarded_router("/api/anomalies", "anomalies")

MetricFilter = Annotated[
    str | None, Query(max_length=64, description="A monitored metric, e.g. conversion_rate.")
]
DimensionFilter = Annotated[
    Literal["all", "device", "traffic_source", "segment"] | None,
    Query(description="Keep one scope kind."),
]
# Days of the headline series drawn around an incident (IncidentDetail.headline_series).
CONTEXT_BEFORE_DAYS, CONTEXT_AFTER_DAYS = 14, 7


@router.get("", response_model=Page[Anomaly])
def anomalies(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    metric: MetricFilter = None,
    dimension: DimensionFilter = None,
) -> dict:
    """Every flagged day x scope x metric over the whole history, newest first.

    Rows of ``anomaly_history`` with ``is_anomaly``: ``value``, ``expected`` and the expected
    range in the metric's own unit (counts per day, rates as fractions 0..1, money per day in
    the currency of the source, seconds), the signed ``score`` (|score| <= 50), direction,
    severity and the ``incident_id`` the point belongs to. Filter by ``start``/``end`` (days,
    inclusive), ``metric`` and ``dimension``; page with ``limit``/``offset``. Empty when no
    scored point passed the threshold: days that could not be scored are listed by
    ``/api/anomalies/unscored``, not here."""
    return page_of(reader.anomaly_history(dates.start, dates.end, metric, dimension), paging)


@router.get("/recent", response_model=Page[RecentAnomaly])
def recent(reader: ReaderDep, paging: PagingDep) -> dict:
    """Flagged points of the latest period (7 complete days by default), largest first.

    The ``anomalies`` table: the flagged rows of ``anomaly_history`` whose day falls in the
    latest ``latest_days`` complete days up to ``as_of``, largest |score| first, in the same
    units as ``/api/anomalies``. Page with ``limit``/``offset``; no filters (use
    ``/api/anomalies`` with ``start``/``end`` for another period). Empty when nothing was
    flagged in the latest period, or when the period's days could not be scored (warm-up,
    no sessions: see ``/api/anomalies/unscored``)."""
    return page_of(reader.anomalies_recent(), paging)


@router.get("/incidents", response_model=Page[IncidentRow])
def incidents(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    severity: Annotated[
        list[Severity] | None,
        Query(description="Keep these severities; repeat for several (severity=high&...)."),
    ] = None,
    ongoing: Annotated[
        bool | None, Query(description="true: only ongoing incidents; false: only ended ones.")
    ] = None,
    metric: Annotated[
        str | None, Query(max_length=64, description="Keep incidents that involve this metric.")
    ] = None,
) -> dict:
    """Incidents (flagged points grouped over consecutive days, metrics and scopes), newest
    first. ``start``/``end`` keep the incidents that overlap [start, end]."""
    frame = reader.incidents(dates.start, dates.end, severity, ongoing, metric)
    return page_of(frame, paging)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail, responses=NOT_FOUND)
def incident(
    reader: ReaderDep,
    incident_id: Annotated[
        str, Path(max_length=200, description="e.g. 2026-02-03-conversion_rate-drop")
    ],
) -> dict:
    """One incident with its contributors ranked by share, its flagged points and its
    headline metric's series around it."""
    found = records(reader.incident(incident_id))
    if not found:
        raise not_found("incident", incident_id, "list the ids with GET /api/anomalies/incidents")
    row = found[0]
    series = reader.anomaly_series(
        row["headline_dimension"],
        row["headline_dimension_value"],
        row["headline_metric"],
        row["start_day"] - timedelta(days=CONTEXT_BEFORE_DAYS),
        row["end_day"] + timedelta(days=CONTEXT_AFTER_DAYS),
    )
    return {
        "incident": row,
        "contributors": records(reader.incident_contributors(incident_id)),
        "points": records(reader.incident_points(incident_id)),
        "headline_series": records(series),
    }


@router.get("/sensitivity", response_model=Sensitivity)
def sensitivity(reader: ReaderDep) -> dict:
    """Simulate on history: how many incidents each threshold would have raised (the run's
    own threshold has is_current = true). Sensitivity is run config of the anomaly assets."""
    rows = records(reader.anomaly_sensitivity())
    current = next((row["threshold"] for row in rows if row["is_current"]), None)
    return {"data": rows, "count": len(rows), "current_threshold": current}


@router.get("/unscored", response_model=Page[UnscoredScope])
def unscored(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    metric: MetricFilter = None,
    dimension: DimensionFilter = None,
) -> dict:
    """Never silent: each scope x metric with days the detector could not score in the range,
    and why (the latest such day's note). Empty when every day was scored."""
    return page_of(reader.anomaly_unscored(dates.start, dates.end, metric, dimension), paging)
