"""The ubap API: read-only JSON over the current serving snapshot.

Run: ``uvicorn ubap_api.main:app --host 127.0.0.1 --port 8000`` (OpenAPI at /docs and /redoc).
Every response carries ``X-UBAP-Snapshot``: the snapshot it was read from; one whose data comes
from a table the last run could not refresh also carries ``X-UBAP-Not-Refreshed``.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ubap_api.cache import ResponseCache
from ubap_api.deps import (
    NOT_REFRESHED_HEADER,
    SNAPSHOT_HEADER,
    not_refreshed_header,
    stale_tables_read,
)
from ubap_api.routers import (
    anomalies,
    funnels,
    meta,
    predictions,
    recommendations,
    retention,
    segments,
    summary,
    trends,
    users,
)
from ubap_api.settings import Settings, get_settings
from ubap_assets.warehouse.reader import (
    MissingTableError,
    NoSnapshotError,
    close_idle_connections,
    open_reader,
)

log = logging.getLogger("uvicorn.error")  # shown with uvicorn's own startup lines


class SnapshotHeaderMiddleware:
    """Adds X-UBAP-Snapshot (the snapshot the request read, or 'none') to every response, and
    X-UBAP-Not-Refreshed when the data came from tables the last run could not refresh."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                headers = MutableHeaders(scope=message)
                headers[SNAPSHOT_HEADER] = state.get("snapshot_id", "none")
                stale = state.get("ubap_not_refreshed") or stale_tables_read(state)
                if stale:
                    headers[NOT_REFRESHED_HEADER] = not_refreshed_header(stale)
            await send(message)

        await self.app(scope, receive, send_with_header)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    try:  # opened once here, so a damaged snapshot is logged at start; the API starts anyway
        with open_reader(settings.snapshots) as reader:
            log.info("serving snapshot %s", reader.snapshot_id)
            for table, reason in reader.not_refreshed.items():
                log.warning("table %s not refreshed: %s", table, reason)
    except NoSnapshotError as exc:  # none yet, or unreadable: every /api route answers 503
        log.warning("%s", exc)
    yield
    close_idle_connections()


async def _no_snapshot(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="ubap API",
        version="0.1.0",
        summary="User Behavior Analytics Platform: read-only API over the serving snapshot.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Outermost last: CORS(SnapshotHeader(ResponseCache(routes))).
    app.add_middleware(ResponseCache)
    app.add_middleware(SnapshotHeaderMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET"],
        allow_headers=["Authorization"],
        expose_headers=[SNAPSHOT_HEADER, NOT_REFRESHED_HEADER],
    )
    app.add_exception_handler(NoSnapshotError, _no_snapshot)
    app.add_exception_handler(MissingTableError, _no_snapshot)
    app.include_router(meta.health_router)
    # Routes match in order: the busiest (per-user lookups, trends) first.
    for module in (
        recommendations,
        trends,
        predictions,
        meta,
        segments,
        anomalies,
        summary,
        funnels,
        retention,
        users,
    ):
        app.include_router(module.router)
    return app


app = create_app()
