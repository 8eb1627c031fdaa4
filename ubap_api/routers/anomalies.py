"""Anomalies found by the detectors."""

from typing import Annotated, Literal

from fastapi import Query

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of
from ubap_api.schemas import Anomaly, Page, RecentAnomaly

router = guarded_router("/api/anomalies", "anomalies")


@router.get("", response_model=Page[Anomaly])
def anomalies(
    reader: ReaderDep,
    dates: DateRangeDep,
    paging: PagingDep,
    metric: Annotated[str | None, Query(max_length=64, description="e.g. conversion_rate")] = None,
    dimension: Annotated[
        Literal["all", "device", "traffic_source", "segment"] | None, Query()
    ] = None,
) -> dict:
    """Every flagged day x scope x metric over the whole history, newest first."""
    return page_of(reader.anomaly_history(dates.start, dates.end, metric, dimension), paging)


@router.get("/recent", response_model=Page[RecentAnomaly])
def recent(reader: ReaderDep, paging: PagingDep) -> dict:
    """Flagged points of the latest period (7 complete days by default), largest first."""
    return page_of(reader.anomalies_recent(), paging)
