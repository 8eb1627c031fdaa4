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


@pytest.mark.slow
def test_high_value_by_each_pipeline_model_and_integer_segments(served):
    """The real pipeline's conversion model is one of the enum's families: its name answers
    the 'best' list, the other families a 404 naming it; segment ids are integers."""
    client, _, _ = served
    best = client.get("/api/predictions/high-value/best", params={"limit": 20}).json()
    assert best["count"] == 20 and best["note"] is None, best["note"]
    served_model = best["data"][0]["conversion_model"]
    others = {"logistic_regression", "random_forest", "xgboost"} - {served_model}
    assert len(others) == 2, served_model
    assert (
        client.get(f"/api/predictions/high-value/{served_model}", params={"limit": 20}).json()[
            "data"
        ]
        == best["data"]
    )
    for family in others:
        other = client.get(f"/api/predictions/high-value/{family}")
        assert other.status_code == 404 and f"'{served_model}'" in other.json()["detail"]
    assert all(type(row["segment_id"]) is int for row in best["data"])
    outlook = client.get("/api/predictions/segments").json()["data"]
    assert outlook and all(type(row["segment_id"]) is int for row in outlook)
