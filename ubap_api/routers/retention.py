"""Weekly cohort retention and user lifecycle."""

from ubap_api.deps import DateRangeDep, PagingDep, ReaderDep, guarded_router
from ubap_api.records import page_of
from ubap_api.schemas import LifecycleWeek, Page, RetentionCohort

router = guarded_router("/api/retention", "retention")


@router.get("", summary="Weekly cohort retention", response_model=Page[RetentionCohort])
def retention(reader: ReaderDep, dates: DateRangeDep, paging: PagingDep) -> dict:
    """One row per weekly cohort (users first seen that ISO week; `cohort_week` within
    `start`/`end`) and week since, with the share of the cohort active that week. The first
    cohort also holds everyone active before the data starts, so it reads higher."""
    return page_of(reader.retention_cohorts(dates.start, dates.end), paging)


@router.get(
    "/lifecycle", summary="Users per week by lifecycle state", response_model=Page[LifecycleWeek]
)
def lifecycle(reader: ReaderDep, dates: DateRangeDep, paging: PagingDep) -> dict:
    """One row per ISO week and state: new (first seen that week), returning (active this and
    last week), resurrecting (active again after a gap) and dormant (active last week, not
    this one; negative in `signed_users` for a stacked chart), with the week's quick ratio."""
    return page_of(reader.lifecycle_weekly(dates.start, dates.end), paging)
