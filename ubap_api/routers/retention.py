"""Weekly cohort retention and user lifecycle."""

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of
from ubap_api.schemas import LifecycleWeek, Page, RetentionCohort

router = guarded_router("/api/retention", "retention")


@router.get("", response_model=Page[RetentionCohort])
def retention(reader: ReaderDep, dates: DateRangeDep, paging: PagingDep) -> dict:
    """Cohorts (cohort_week in the range) x weeks since first seen, with retention rate."""
    return page_of(reader.retention_cohorts(dates.start, dates.end), paging)


@router.get("/lifecycle", response_model=Page[LifecycleWeek])
def lifecycle(reader: ReaderDep, dates: DateRangeDep, paging: PagingDep) -> dict:
    """Users per week by state: new, returning, resurrecting, dormant."""
    return page_of(reader.lifecycle_weekly(dates.start, dates.end), paging)
