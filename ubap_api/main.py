"""The ubap API: read-only JSON over the current serving snapshot.

Run: ``uvicorn ubap_api.main:app --host 127.0.0.1 --port 8000`` (OpenAPI at /docs and /redoc,
served with their assets from this process: they work offline).
Every response carries ``X-UBAP-Snapshot``: the snapshot it was read from; one whose data comes
from a table the last run could not refresh also carries ``X-UBAP-Not-Refreshed``.
"""

import inspect
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ubap_api.cache import ResponseCache
from ubap_api.deps import (
    NOT_REFRESHED_HEADER,
    SNAPSHOT_HEADER,
    not_refreshed_header,
    stale_tables_read,
)
from ubap_api.docs_ui import add_offline_docs
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


DESCRIPTION = """\
Read-only JSON over the current **serving snapshot**: an immutable copy of the pipeline's
tables, published after each successful run. Every response names its snapshot in the
`X-UBAP-Snapshot` header; data from a table the last run could not refresh also carries
`X-UBAP-Not-Refreshed`.

**Units.** Rates and shares are fractions 0..1 (0.05 = 5%); a change of a rate is in the same
unit (percentage points when multiplied by 100). Money is in the currency of the source data,
rounded to 2 decimals; other decimals are rounded to 6 significant digits, never fewer than 2
decimals. Durations say their unit in the field name (`_s`, `_minutes`, `_days`). Days are UTC
calendar days (`YYYY-MM-DD`), weeks are ISO weeks named by their Monday; timestamps are UTC
(RFC 3339, `...Z`). `segment_id` is an integer; null stands for all users.

**Auth.** With `UBAP_API_TOKEN` set, every `/api` route needs `Authorization: Bearer <token>`.
"""

# One entry per router tag, in the order the docs list them.
OPENAPI_TAGS: list[dict[str, str]] = [
    {
        "name": "service",
        "description": "Health (no token) and the snapshot being served: its run, data range, "
        "check results and any tables the last run could not refresh.",
    },
    {
        "name": "trends",
        "description": "Daily and weekly activity, conversion, bounce and revenue, overall or "
        "broken down by device or traffic source.",
    },
    {
        "name": "funnels",
        "description": "The purchase funnel (page view, product view, add to cart, checkout, "
        "purchase): sessions per step with step and overall conversion, overall or per segment.",
    },
    {
        "name": "retention",
        "description": "Weekly first-seen cohorts and how many come back, and users per week by "
        "lifecycle state (new, returning, resurrecting, dormant).",
    },
    {
        "name": "segments",
        "description": "Behavioural segments (K-means over user features): their profiles, "
        "daily trends and the clustering's quality.",
    },
    {
        "name": "predictions",
        "description": "Per-user scores of the best models: purchase within the horizon "
        "(high-value users) and next-session bounce (at-risk users), with reasons; the "
        "models' validation metrics.",
    },
    {
        "name": "recommendations",
        "description": "Pages recommended to each user, similar pages, insights for the site's "
        "admin, and the recommenders' offline evaluation.",
    },
    {
        "name": "anomalies",
        "description": "Unusual days in the monitored metrics, grouped into incidents with "
        "their contributors, and the detector's sensitivity.",
    },
    {
        "name": "summary",
        "description": "The latest period in words (Gemini when configured, else a "
        "deterministic text) with the numbers it is grounded in.",
    },
    {"name": "users", "description": "Everything known about one user."},
]
_SENTENCE_END = re.compile(r"(?<=\.)\s")


def summarize_operations(router: APIRouter) -> None:
    """Give every documented route a summary: its own, else its docstring's first sentence
    (FastAPI would title-case the function's name: "For User"). The docstring stays the
    operation's description."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema or route.summary:
            continue
        text = inspect.cleandoc(route.description or "")
        if not text:
            raise RuntimeError(f"route {route.path} needs a docstring: it is its documentation")
        first_paragraph = " ".join(text.split("\n\n")[0].split())
        route.summary = _SENTENCE_END.split(first_paragraph, maxsplit=1)[0].rstrip(".")


# FastAPI's own 422 components, described like every other response field.
VALIDATION_ERROR_FIELDS = {
    "HTTPValidationError": {"detail": "One entry per invalid parameter."},
    "ValidationError": {
        "loc": "Where the problem is: ['query' | 'path', the parameter's name].",
        "msg": "What is wrong, and the values that are valid.",
        "type": "The kind of error, e.g. 'enum', 'date_from_datetime_parsing'.",
        "input": "The value that was sent.",
        "ctx": "The constraint that failed (e.g. the expected values), when there is one.",
    },
}


def describe_validation_errors(app: FastAPI) -> None:
    """Wrap app.openapi so FastAPI's 422 components carry field descriptions too."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.get("components", {}).get("schemas", {})
            for name, fields in VALIDATION_ERROR_FIELDS.items():
                properties = components.get(name, {}).get("properties", {})
                for field, text in fields.items():
                    if field in properties:
                        properties[field].setdefault("description", text)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="ubap API",
        version="0.1.0",
        summary="User Behavior Analytics Platform: read-only API over the serving snapshot.",
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        docs_url=None,  # add_offline_docs serves /docs and /redoc with local assets
        redoc_url=None,
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
    summarize_operations(meta.health_router)
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
        summarize_operations(module.router)
        app.include_router(module.router)
    add_offline_docs(app)
    describe_validation_errors(app)
    return app


app = create_app()
