"""The predictions API, reader and dashboard page when a task has insufficient data: empty
lists with the reason, metrics rows that say why, and each list's reasons from its own model."""

import shutil

import duckdb
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from tests.api_sample import publish_sample, sample_warehouse
from ubap_api.main import create_app
from ubap_api.settings import Settings

NOTE = (
    "bounce: insufficient data: 4 positives and 4,995 negatives among 4,999 users in the "
    "train window [2026-01-19, 2026-02-02); at least 50 of each are needed"
)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory, tiny_spec):
    folder = tmp_path_factory.mktemp("prediction-api")
    warehouse = folder / "warehouse.duckdb"
    shutil.copy(sample_warehouse(tiny_spec), warehouse)
    with duckdb.connect(str(warehouse)) as con:
        # what model_training and user_predictions write when bounce cannot be trained
        con.execute(
            "UPDATE user_predictions SET at_risk_probability = NULL, at_risk = NULL, "
            "at_risk_rank = NULL, at_risk_reason_1 = NULL, at_risk_reason_2 = NULL, "
            "bounce_model = NULL, at_risk_reason_method = NULL, bounce_note = ?",
            [NOTE],
        )
        con.execute(
            "UPDATE model_metrics SET model = NULL, status = 'insufficient data', note = ?, "
            "roc_auc = NULL, roc_auc_ci_low = NULL, roc_auc_ci_high = NULL, pr_auc = NULL, "
            "pr_auc_ci_low = NULL, pr_auc_ci_high = NULL, is_best = FALSE WHERE task = 'bounce'",
            [NOTE],
        )
        publish_sample(con, folder / "snapshots", "insufficient-bounce")
    return folder / "snapshots"


@pytest.fixture(scope="module")
def client(snapshots):
    with TestClient(create_app(Settings(snapshot_dir=snapshots))) as c:
        yield c


def test_an_unserved_task_answers_an_empty_list_with_the_reason(client):
    risk = client.get("/api/predictions/at-risk").json()
    assert risk["data"] == [] and risk["total"] == 0
    assert risk["note"] == NOTE
    high = client.get("/api/predictions/high-value/best", params={"limit": 5}).json()
    assert high["note"] is None and high["count"] == 5
    # the high-value list carries the conversion model's reasons and their method
    assert all(row["reasons"] and row["reason_method"] for row in high["data"])
    assert high["data"][0]["reasons"][0].startswith("purchased")


def test_the_at_risk_list_carries_the_bounce_model_s_reasons(tmp_path, tiny_spec):
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(sample_warehouse(tiny_spec), warehouse)
    with duckdb.connect(str(warehouse)) as con:
        publish_sample(con, tmp_path / "snapshots", "served")
    with TestClient(create_app(Settings(snapshot_dir=tmp_path / "snapshots"))) as c:
        risk = c.get("/api/predictions/at-risk", params={"limit": 5}).json()
    assert risk["note"] is None and risk["count"] == 5
    for row in risk["data"]:
        assert row["reasons"][0].endswith("% of visits bounced"), row["reasons"]


def test_model_metrics_say_why_a_task_is_insufficient(client):
    rows = client.get("/api/predictions/models", params={"task": "bounce"}).json()["data"]
    assert {r["status"] for r in rows} == {"insufficient data"}
    assert all(r["note"] == NOTE and r["model"] is None for r in rows)
    test = client.get(
        "/api/predictions/models", params={"task": "conversion", "split": "test"}
    ).json()["data"]
    assert test and all(r["split"] == "test" for r in test)
    best = test[0]
    assert best["is_best"] and best["n"] > 0 and best["positives"] > 0
    assert best["roc_auc_ci_low"] <= best["roc_auc"] <= best["roc_auc_ci_high"]


def test_a_user_s_predictions_carry_both_tasks_and_the_note(client):
    user = client.get("/api/predictions/high-value/best", params={"limit": 1}).json()["data"][0]
    detail = client.get(f"/api/users/{user['user_id']}").json()["predictions"]
    assert detail["at_risk_probability"] is None and detail["bounce_note"] == NOTE
    assert detail["conversion_probability"] is not None and detail["reasons"]
    assert detail["at_risk_reasons"] == []


def test_the_dashboard_says_why_a_task_serves_no_model(snapshots, monkeypatch):
    from test_dashboard import APP, PAGE_FILES

    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(snapshots))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(f"app_pages/{PAGE_FILES['predictions']}")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(NOTE in i.value for i in at.info)  # the at-risk tab
    at.segmented_control(key="model_task").set_value("bounce").run()
    assert any(NOTE in w.value for w in at.warning)
    at.segmented_control(key="model_task").set_value("conversion").run()
    shown = " ".join(c.value for c in at.caption)
    assert "reported on the later test window" in shown and "95% interval" in shown


@pytest.fixture(scope="module")
def served_family(tmp_path_factory, tiny_spec):
    """A snapshot scored by a pipeline family (random_forest) and not segmented."""
    folder = tmp_path_factory.mktemp("served-family")
    warehouse = folder / "warehouse.duckdb"
    shutil.copy(sample_warehouse(tiny_spec), warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE user_predictions SET conversion_model = 'random_forest'")
        con.execute("UPDATE model_metrics SET model = 'random_forest' WHERE task = 'conversion'")
        publish_sample(con, folder / "snapshots", "random-forest", skip=("user_segments",))
    with TestClient(create_app(Settings(snapshot_dir=folder / "snapshots"))) as c:
        yield c


def test_high_value_answers_for_best_and_the_family_in_service_only(served_family):
    best = served_family.get("/api/predictions/high-value/best", params={"limit": 5}).json()
    assert best["count"] == 5
    same = served_family.get("/api/predictions/high-value/random_forest", params={"limit": 5})
    assert same.status_code == 200 and same.json() == best
    for family in ("logistic_regression", "xgboost"):
        other = served_family.get(f"/api/predictions/high-value/{family}")
        assert other.status_code == 404, other.text
        detail = other.json()["detail"]
        assert family in detail and "'random_forest'" in detail and "'best'" in detail


def test_an_unsegmented_user_has_a_null_segment_id(served_family):
    rows = served_family.get("/api/predictions/at-risk", params={"limit": 5}).json()["data"]
    assert rows and all(r["segment_id"] is None and r["segment_name"] is None for r in rows)
    # the per-segment outlook needs the segments: a 503 that names the missing table
    outlook = served_family.get("/api/predictions/segments")
    assert outlook.status_code == 503 and "user_segments" in outlook.json()["detail"]
