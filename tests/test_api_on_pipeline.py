"""The API over the snapshot the real pipeline publishes (not a hand-built one): every endpoint
answers from it, with real ids."""

import pytest
from fastapi.testclient import TestClient

from tests.test_api import LIST_ENDPOINTS
from ubap_api.main import create_app
from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import open_reader
from ubap_assets.warehouse.snapshots import current_snapshot

# Lists that may legitimately be empty on a small world: nothing flagged in the latest week,
# no incident at all, every day scored.
MAY_BE_EMPTY = {"/api/anomalies/recent", "/api/anomalies/incidents", "/api/anomalies/unscored"}


@pytest.fixture(scope="module")
def served(materialized_graph):
    directory = materialized_graph.snapshot_dir
    with TestClient(create_app(Settings(snapshot_dir=directory))) as client:
        yield client, current_snapshot(directory).snapshot_id, directory


@pytest.mark.slow
@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_every_list_endpoint_answers_from_the_pipeline_snapshot(served, path):
    client, snapshot_id, _ = served
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["X-UBAP-Snapshot"] == snapshot_id
    body = response.json()
    assert body["total"] >= body["count"] == len(body["data"])
    assert body["count"] > 0 or path in MAY_BE_EMPTY, f"{path} returned no rows"


@pytest.mark.slow
def test_per_user_and_per_page_endpoints_use_real_ids(served):
    client, snapshot_id, directory = served
    with open_reader(directory) as reader:
        user = reader.scalar(
            "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT 1"
        )
        page = reader.scalar("SELECT page_id FROM similar_pages ORDER BY page_id LIMIT 1")
    for path in (
        f"/api/users/{user}",
        f"/api/recommendations/users/{user}",
        f"/api/recommendations/pages/{page}",
        "/api/segments/summary",
        "/api/summary/llm",
        "/api/meta",
    ):
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.text}"
        assert response.headers["X-UBAP-Snapshot"] == snapshot_id
    recs = client.get(f"/api/recommendations/users/{user}").json()
    assert len(recs["data"]) == 10
    assert client.get("/api/users/no-such-user").status_code == 404
