"""Service routes: health and what snapshot is being served."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from ubap_api.deps import ReaderDep, guarded_router
from ubap_api.records import records
from ubap_api.schemas import Health, Meta
from ubap_assets.warehouse.reader import NoSnapshotError, UnreadableSnapshotError, open_reader

health_router = APIRouter(tags=["service"])
router = guarded_router("/api", "service")


@health_router.get(
    "/health",
    summary="Is the API serving a snapshot",
    response_model=Health,
    responses={503: {"model": Health, "description": "The pointer or snapshot is unreadable."}},
)
def health(request: Request, response: Response) -> dict:
    """Needs no token. 200 with status 'ok', 'degraded' (some tables were not refreshed by
    the last run: listed under not_refreshed) or 'no_snapshot' (nothing published yet: the
    process is alive). 503 'unreadable' when the snapshot pointer or file cannot be read: the
    snapshot is opened, so a damaged file shows here.
    """
    try:
        reader = open_reader(request.app.state.settings.snapshots)
    except UnreadableSnapshotError as exc:
        response.status_code = 503
        return {"status": "unreadable", "snapshot_id": None, "detail": str(exc)}
    except NoSnapshotError as exc:
        return {"status": "no_snapshot", "snapshot_id": None, "detail": str(exc)}
    with reader:
        request.state.snapshot_id = reader.snapshot_id
        stale = reader.not_refreshed
        return {
            "status": "degraded" if stale else "ok",
            "snapshot_id": reader.snapshot_id,
            "detail": f"{len(stale)} table(s) not refreshed by the last run" if stale else "",
            "not_refreshed": stale,
        }


@router.get("/meta", summary="The snapshot being served", response_model=Meta)
def meta(reader: ReaderDep) -> dict:
    """The snapshot behind every response now: its id, the Dagster run that published it, when,
    the data's first and last day, the tables it holds, the asset checks of the publishing run
    (passed, failed or skipped, each with its reason) and the tables that run could not
    refresh."""
    m = reader.meta()
    checks = records(reader.check_results()) if reader.has_table("check_results") else []
    age = None
    if m.materialized_at is not None:
        age = round((datetime.now(UTC).replace(tzinfo=None) - m.materialized_at).total_seconds(), 1)
    return {
        "snapshot_id": m.snapshot_id,
        "run_id": m.run_id,
        "materialized_at": m.materialized_at,
        "age_seconds": age,
        "data_start": m.data_start,
        "data_end": m.data_end,
        "tables": list(m.tables),
        "missing_tables": list(m.missing_tables),
        "not_refreshed": reader.not_refreshed,
        "checks_total": len(checks),
        "checks_failed": sum(1 for c in checks if c["status"] == "failed"),
        "checks_skipped": sum(1 for c in checks if c["status"] == "skipped"),
        "checks": checks,
    }
