"""Whole responses memoized per snapshot: snapshots are immutable, so a cache can't be stale.

A pure ASGI middleware in front of the routes: a GET under /api/ whose (snapshot, path, query)
was answered with 200 before is replayed without touching FastAPI, and each entry is keyed by
the snapshot the route actually read (so a response never mixes two snapshots). The token is
still checked on every request; only 200s are stored; a new snapshot drops the old entries.

Memory is bounded whatever the query strings: entries live in a ``cachetools.LRUCache``
whose size is bytes (``MAX_TOTAL_BYTES``), counting the body, the key and the headers of each
entry. (Caching per query instead took the API from 879 MB to 3.3 GB RSS: a polars frame from
DuckDB holds far more than its size; a response body is what it weighs.)
"""

import threading

from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ubap_api.deps import stale_tables_read, token_problem
from ubap_assets.warehouse.reader import NoSnapshotError, resolve_snapshot

MAX_BODY_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 16 * 2**20
_ENTRY_OVERHEAD = 1024  # the tuples, the start message dict, the key's bytes objects

Key = tuple[str, bytes]
Entry = tuple[Message, bytes, dict[str, str]]  # start message, body, not-refreshed tables


def _entry_bytes(entry: tuple[Key, Entry]) -> int:
    (path, query), (start, body, stale) = entry
    headers = sum(len(k) + len(v) for k, v in start["headers"])
    extra = sum(len(k) + len(v) for k, v in stale.items())
    return len(body) + len(path) + len(query) + headers + extra + _ENTRY_OVERHEAD


class ResponseCache:
    def __init__(self, app: ASGIApp):
        self.app = app
        self.snapshot_id: str | None = None
        # Values carry their key so the size function can count it.
        self.entries: LRUCache[Key, tuple[Key, Entry]] = LRUCache(
            maxsize=MAX_TOTAL_BYTES, getsizeof=_entry_bytes
        )
        # LRUCache is not thread-safe, and a hit reorders it: every access holds this lock.
        self._lock = threading.Lock()

    def _switch(self, snapshot_id: str) -> None:
        if snapshot_id != self.snapshot_id:
            with self._lock:
                self.snapshot_id = snapshot_id
                self.entries.clear()

    def _lookup(self, key: Key) -> Entry | None:
        with self._lock:
            found = self.entries.get(key)
        return None if found is None else found[1]

    def _store(self, snapshot_id: str, key: Key, entry: Entry) -> None:
        value = (key, entry)
        if len(entry[1]) > MAX_BODY_BYTES or _entry_bytes(value) > self.entries.maxsize:
            return  # LRUCache raises on a value larger than the whole budget
        with self._lock:
            if snapshot_id == self.snapshot_id:
                self.entries[key] = value

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
            snapshot = resolve_snapshot(settings.snapshots)
        except NoSnapshotError:
            await self.app(scope, receive, send)  # the route answers 503
            return
        snapshot_id = snapshot.snapshot_id
        self._switch(snapshot_id)
        key = (scope["path"], scope["query_string"])
        hit = self._lookup(key)
        if hit is not None:
            start, body, stale = hit
            state = scope.setdefault("state", {})
            state["snapshot_id"] = snapshot_id
            state["ubap_not_refreshed"] = stale  # for the X-UBAP-Not-Refreshed header
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
                    state = scope.get("state") or {}
                    read_from = state.get("snapshot_id")
                    body = b"".join(captured["chunks"])  # type: ignore[arg-type]
                    if read_from:
                        stale = stale_tables_read(state)
                        self._store(read_from, key, (captured["start"], body, stale))  # type: ignore[arg-type]
            await send(message)

        await self.app(scope, receive, capture)
