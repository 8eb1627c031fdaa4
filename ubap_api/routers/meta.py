"""Service routes: liveness and what snapshot is being served."""

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request

from ubap_api.deps import ReaderDep, require_token
from ubap_api.records import records
from ubap_api.schemas import API_ERRORS, Health, Meta
from ubap_assets.warehouse.snapshots import NoSnapshotError, current_snapshot

health_router = APIRouter(tags=["service"])
router = APIRouter(
    prefix="/api",
    tags=["service"],
    dependencies=[Depends(require_token)],
    responses=API_ERRORS,
)


@health_router.get("/health", response_model=Health)
async def health(request: Request) -> dict:
    """Liveness (no token needed): 200 always; says whether a snapshot is being served."""
    try:
        snapshot_id = current_snapshot(request.app.state.settings.snapshots).snapshot_id
    except NoSnapshotError:
        return {"status": "no_snapshot", "snapshot_id": None}
    request.state.snapshot_id = snapshot_id
    return {"status": "ok", "snapshot_id": snapshot_id}


@router.get("/meta", response_model=Meta)
async def meta(reader: ReaderDep) -> dict:
    """The snapshot behind every response now: id, run, publication time, data range, checks."""
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
        "checks_total": len(checks),
        "checks_failed": sum(1 for c in checks if not c["passed"]),
        "checks": checks,
    }
