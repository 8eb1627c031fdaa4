"""Whole responses memoized per snapshot: snapshots are immutable, so a cache can't be stale.

A pure ASGI middleware in front of the routes: a GET under /api/ whose (snapshot, path, query)
was answered with 200 before is replayed without touching FastAPI, and each entry is keyed by
the snapshot the route actually read (so a response never mixes two snapshots). The token is
still checked on every request; only 200s are stored; a new snapshot drops the old entries.
"""

from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ubap_api.deps import token_problem
from ubap_assets.warehouse.snapshots import NoSnapshotError, current_snapshot

MAX_BODY_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 64 * 2**20


class ResponseCache:
    def __init__(self, app: ASGIApp):
        self.app = app
        self.snapshot_id: str | None = None
        self.entries: OrderedDict[tuple[str, bytes], tuple[Message, bytes]] = OrderedDict()
        self.total_bytes = 0

    def _switch(self, snapshot_id: str) -> None:
        if snapshot_id != self.snapshot_id:
            self.snapshot_id = snapshot_id
            self.entries.clear()
            self.total_bytes = 0

    def _store(self, snapshot_id: str, key: tuple[str, bytes], start: Message, body: bytes) -> None:
        if snapshot_id != self.snapshot_id or len(body) > MAX_BODY_BYTES:
            return
        self.entries[key] = (start, body)
        self.total_bytes += len(body)
        while self.total_bytes > MAX_TOTAL_BYTES and self.entries:
            _, (_, old) = self.entries.popitem(last=False)
            self.total_bytes -= len(old)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        if token_problem(settings, auth.decode("latin-1") if auth else None):
            await self.app(scope, receive, send)  # the route answers 401
            return
        try:
            snapshot = current_snapshot(settings.snapshots)
        except NoSnapshotError:
            await self.app(scope, receive, send)  # the route answers 503
            return
        snapshot_id = snapshot.snapshot_id
        self._switch(snapshot_id)
        key = (scope["path"], scope["query_string"])
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            scope.setdefault("state", {})["snapshot_id"] = snapshot_id
            start, body = hit
            # A fresh message each time: outer middleware appends headers in place.
            await send({**start, "headers": list(start["headers"])})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return

        # The route reads exactly this snapshot (get_reader takes it from the scope).
        scope.setdefault("state", {})["ubap_snapshot"] = snapshot
        captured: dict[str, object] = {"start": None, "chunks": [], "ok": True}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = {**message, "headers": list(message.get("headers", []))}
                captured["ok"] = message["status"] == 200
            elif message["type"] == "http.response.body" and captured["ok"]:
                captured["chunks"].append(message.get("body", b""))  # type: ignore[union-attr]
                if not message.get("more_body", False):
                    read_from = (scope.get("state") or {}).get("snapshot_id")
                    body = b"".join(captured["chunks"])  # type: ignore[arg-type]
                    if read_from:
                        self._store(read_from, key, captured["start"], body)  # type: ignore[arg-type]
            await send(message)

        await self.app(scope, receive, capture)
