"""The API under broken or hostile conditions: unreadable pointers and snapshot files, a snapshot
folder that is a file, out-of-range dates, slow queries, stale tables, distinct query strings."""

import asyncio
import shutil
import time
from datetime import date, timedelta

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api_sample import publish_sample, sample_warehouse
from ubap_api import cache
from ubap_api.main import create_app
from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import SnapshotReader, close_idle_connections, open_reader

SNAPSHOT_ID = "hardening-1"
STALE = {
    "user_predictions": "not refreshed: user_predictions failed (single-class labels)",
    "daily_trends": "not refreshed: upstream sessions failed",
}


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_spec):
    """A good snapshot folder, copied by tests that then break their copy."""
    directory = tmp_path_factory.mktemp("hardening") / "snapshots"
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, directory, SNAPSHOT_ID)
    return directory


@pytest.fixture
def snapshots(published, tmp_path):
    close_idle_connections()  # a test may corrupt a file an earlier test had open
    copy = tmp_path / "snapshots"
    shutil.copytree(published, copy)
    yield copy
    close_idle_connections()


def _assert_unreadable(directory, *fragments: str) -> None:
    with TestClient(create_app(Settings(snapshot_dir=directory))) as c:
        r = c.get("/api/trends/daily")
        assert r.status_code == 503, r.text
        detail = r.json()["detail"]
        for fragment in fragments:
            assert fragment in detail, detail
        assert "serving_snapshot" in detail or "UBAP_SNAPSHOT_DIR" in detail  # the fix
        health = c.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unreadable"
        assert health.json()["detail"] == detail


def test_corrupt_pointer_is_503_and_unhealthy(snapshots):
    (snapshots / "CURRENT").write_bytes(b"\xff\xfe\x00garbage\x81")
    _assert_unreadable(snapshots, "CURRENT", "corrupt")


def test_pointer_naming_a_missing_file_is_503_and_unhealthy(snapshots):
    (snapshots / "CURRENT").write_text("no-such-snapshot\n")
    _assert_unreadable(snapshots, "no-such-snapshot")


def test_pointer_that_is_a_folder_is_503_and_unhealthy(snapshots):
    (snapshots / "CURRENT").unlink()
    (snapshots / "CURRENT").mkdir()
    _assert_unreadable(snapshots, "CURRENT", "cannot be read")


def test_snapshot_file_that_is_not_duckdb_is_503_and_unhealthy(snapshots):
    (snapshots / f"{SNAPSHOT_ID}.duckdb").write_bytes(b"not a database" * 1000)
    _assert_unreadable(snapshots, f"{SNAPSHOT_ID}.duckdb", "damaged")


def test_truncated_snapshot_file_is_503_and_unhealthy(snapshots):
    path = snapshots / f"{SNAPSHOT_ID}.duckdb"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    _assert_unreadable(snapshots, f"{SNAPSHOT_ID}.duckdb")


def test_snapshot_dir_that_is_a_file_starts_and_answers_503(tmp_path):
    not_a_dir = tmp_path / "snapshots"
    not_a_dir.write_text("oops")
    _assert_unreadable(not_a_dir, "is a file", "UBAP_SNAPSHOT_DIR")


def test_nothing_published_yet_is_503_but_alive(tmp_path):
    with TestClient(create_app(Settings(snapshot_dir=tmp_path / "none"))) as c:
        assert c.get("/api/meta").status_code == 503
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "no_snapshot"
        assert "make up" in health.json()["detail"]


@pytest.fixture(scope="module")
def client(published):
    with TestClient(create_app(Settings(snapshot_dir=published))) as c:
        yield c


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("start", "0"),
        ("end", "0"),
        ("start", "1704067200"),  # 2024-01-01 as Unix time
        ("start", "1999-12-31"),
        ("end", (date.today() + timedelta(days=400)).isoformat()),
    ],
)
def test_dates_outside_a_sane_range_are_422_naming_the_parameter(client, name, value):
    r = client.get("/api/trends/daily", params={name: value})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", name]
    assert name in error["msg"]


def test_dates_inside_the_range_are_accepted(client):
    r = client.get("/api/trends/daily", params={"start": "2000-01-01", "end": "2026-02-01"})
    assert r.status_code == 200
    ahead = (date.today() + timedelta(days=300)).isoformat()
    assert client.get("/api/anomalies", params={"end": ahead}).status_code == 200


def test_a_slow_query_does_not_block_health(published, monkeypatch):
    original = SnapshotReader.trends

    def slow_trends(self, *args, **kwargs):
        time.sleep(1.5)  # DuckDB releases the GIL while it works, as sleep does
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SnapshotReader, "trends", slow_trends)
    app = create_app(Settings(snapshot_dir=published))

    async def scenario() -> tuple[float, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            started = time.perf_counter()

            async def health() -> tuple[float, int]:
                await asyncio.sleep(0.2)  # the slow request is running by now
                r = await c.get("/health")
                return time.perf_counter() - started, r.status_code

            slow, (waited, status) = await asyncio.gather(c.get("/api/trends/daily"), health())
            return waited, status, slow.status_code

    waited, health_status, slow_status = asyncio.run(scenario())
    assert slow_status == 200 and health_status == 200
    # Asked 0.2 s in, answered at once: not after the 1.5 s query.
    assert waited < 1.0, f"/health answered {waited:.2f} s in, behind a slow query"


@pytest.fixture(scope="module")
def stale_client(tmp_path_factory, tiny_spec):
    directory = tmp_path_factory.mktemp("stale") / "snapshots"
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, directory, "stale-1", not_refreshed=STALE)
    with TestClient(create_app(Settings(snapshot_dir=directory))) as c:
        yield c


def test_responses_from_stale_tables_say_so_in_a_header(stale_client):
    for _ in range(2):  # the second answer comes from the response cache
        r = stale_client.get("/api/predictions/at-risk", params={"limit": 3})
        assert r.status_code == 200
        header = r.headers["X-UBAP-Not-Refreshed"]
        assert header == f"user_predictions: {STALE['user_predictions']}"
    trends = stale_client.get("/api/trends/daily", params={"limit": 2})
    assert trends.headers["X-UBAP-Not-Refreshed"] == f"daily_trends: {STALE['daily_trends']}"
    # A response that reads only fresh tables carries no such header.
    fresh = stale_client.get("/api/retention", params={"limit": 2})
    assert fresh.status_code == 200
    assert "X-UBAP-Not-Refreshed" not in fresh.headers


def test_health_and_meta_list_the_stale_tables(stale_client):
    health = stale_client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["not_refreshed"] == STALE
    assert stale_client.get("/api/meta").json()["not_refreshed"] == STALE


def test_fresh_snapshot_lists_nothing_stale(client):
    assert client.get("/health").json()["not_refreshed"] == {}
    meta = client.get("/api/meta")
    assert meta.json()["not_refreshed"] == {}
    assert "X-UBAP-Not-Refreshed" not in meta.headers


def test_prediction_lists_are_paged_in_sql_with_the_full_total(published):
    with open_reader(published) as r:
        everyone = r.scalar("SELECT count(*) FROM user_predictions")
        page, total = r.high_value_users(0.0, limit=5, offset=10)
        assert total == everyone and page.height == 5
        assert page["conversion_rank"].to_list() == [11, 12, 13, 14, 15]
        risky, total = r.at_risk_users(None, limit=1000, offset=0)
        assert total == r.scalar("SELECT count(*) FROM user_predictions WHERE at_risk")
        assert risky.height == min(total, 1000)


def _response_cache(app) -> cache.ResponseCache:
    layer = app.middleware_stack
    while not isinstance(layer, cache.ResponseCache):
        layer = layer.app
    return layer


def test_response_cache_stays_within_its_byte_budget_whatever_the_query_strings(
    published, monkeypatch
):
    budget = 64 * 1024
    monkeypatch.setattr(cache, "MAX_TOTAL_BYTES", budget)
    app = create_app(Settings(snapshot_dir=published))
    padding = "x" * 2000  # unknown parameters are ignored by the route, but key the cache
    with TestClient(app) as c:
        for i in range(120):
            r = c.get(
                f"/api/predictions/high-value/best?limit=1&min_probability=0.{i:03d}&p={padding}"
            )
            assert r.status_code == 200
        stored = _response_cache(app).entries
        held = sum(
            len(body) + len(path) + len(query) for (path, query), (_, body, _) in stored.values()
        )
        assert 0 < held <= budget
        assert stored.currsize <= budget
