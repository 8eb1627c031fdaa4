"""Incidents, their root causes, the sensitivity simulation and the unscored points through the
API, on the sample snapshot (tests.api_sample)."""

from datetime import date

import duckdb
import pytest
from fastapi.testclient import TestClient

from tests.api_sample import publish_sample, sample_warehouse
from ubap_api.main import create_app
from ubap_api.settings import Settings
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.reader import open_reader


@pytest.fixture(scope="module")
def snapshots(sample_snapshots):
    return sample_snapshots


@pytest.fixture(scope="module")
def client(snapshots):
    with TestClient(create_app(Settings(snapshot_dir=snapshots))) as c:
        yield c


@pytest.fixture(scope="module")
def reader(snapshots):
    with open_reader(snapshots) as r:
        yield r


@pytest.fixture(scope="module")
def listed(client) -> list[dict]:
    body = client.get("/api/anomalies/incidents", params={"limit": 1000}).json()
    assert body["total"] == body["count"] > 0, "the sample world raises no incident"
    return body["data"]


def test_incidents_are_listed_newest_first_with_typed_fields(listed, reader):
    assert len(listed) == reader.scalar(f"SELECT count(*) FROM {t.INCIDENTS}")
    ends = [(row["end_day"], row["start_day"]) for row in listed]
    assert ends == sorted(ends, reverse=True)
    for row in listed:
        assert date.fromisoformat(row["start_day"]) <= date.fromisoformat(row["end_day"])
        assert row["severity"] in {"low", "medium", "high"}
        assert row["direction"] in {"drop", "spike"}
        assert abs(row["peak_score"]) <= 50
        assert row["headline_metric"] in row["metrics"]
        assert row["description"].endswith(".")
        # rounded for reading: no float carries more than 6 decimals
        for name in ("expected", "observed", "relative_change", "peak_score", "top_share"):
            if row[name] is not None:
                assert round(row[name], 6) == row[name], (name, row[name])


def test_incident_filters(client, listed):
    newest = listed[0]
    day = newest["start_day"]
    overlapping = client.get("/api/anomalies/incidents", params={"start": day, "end": day}).json()
    assert newest["incident_id"] in {row["incident_id"] for row in overlapping["data"]}
    assert all(row["start_day"] <= day <= row["end_day"] for row in overlapping["data"]), (
        "start/end keep the incidents overlapping the range"
    )

    severity = newest["severity"]
    same = client.get("/api/anomalies/incidents", params={"severity": severity}).json()
    assert same["total"] == sum(row["severity"] == severity for row in listed)
    several = client.get(
        "/api/anomalies/incidents", params=[("severity", "low"), ("severity", "high")]
    ).json()
    assert several["total"] == sum(row["severity"] in {"low", "high"} for row in listed)

    for flag in (True, False):
        got = client.get("/api/anomalies/incidents", params={"ongoing": flag}).json()
        assert got["total"] == sum(row["ongoing"] is flag for row in listed)

    metric = newest["headline_metric"]
    involving = client.get("/api/anomalies/incidents", params={"metric": metric}).json()
    assert involving["total"] == sum(metric in row["metrics"] for row in listed)
    none = client.get("/api/anomalies/incidents", params={"metric": "no_such_metric"}).json()
    assert none["total"] == 0 and none["data"] == []

    one = client.get("/api/anomalies/incidents", params={"limit": 1}).json()
    assert one["count"] == 1 and one["total"] == len(listed)
    assert one["data"][0]["incident_id"] == newest["incident_id"]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"severity": "critical"}, "severity"),
        ({"ongoing": "maybe"}, "ongoing"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-02-10", "end": "2026-02-01"}, "start"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_incident_filters_are_422_naming_the_parameter(client, params, names):
    r = client.get("/api/anomalies/incidents", params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(names in problem["loc"] for problem in detail), detail
    assert all(problem["msg"] for problem in detail)


def test_incident_detail_has_ranked_contributors_points_and_the_series(client, listed, reader):
    incident = listed[0]
    incident_id = incident["incident_id"]
    body = client.get(f"/api/anomalies/incidents/{incident_id}").json()
    assert body["incident"] == incident

    contributors = body["contributors"]
    assert contributors, "no contributor ranked"
    assert contributors[0]["metric"] == incident["headline_metric"], "headline metric first"
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in contributors:
        assert row["incident_id"] == incident_id and 0 <= row["share"] <= 1
        groups.setdefault((row["metric"], row["dimension"]), []).append(row)
    for rows in groups.values():
        assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
        shares = [row["share"] for row in rows]
        assert shares == sorted(shares, reverse=True)

    points = body["points"]
    assert (
        len(points)
        == incident["n_points"]
        == reader.scalar(
            f"SELECT count(*) FROM {t.ANOMALY_HISTORY} WHERE incident_id = ?", [incident_id]
        )
    )
    assert all(p["incident_id"] == incident_id and p["is_anomaly"] for p in points)
    assert {p["metric"] for p in points} == set(incident["metrics"])
    days = [p["day"] for p in points]
    assert days == sorted(days)
    assert incident["start_day"] == days[0] and incident["end_day"] == days[-1]

    series = body["headline_series"]
    series_days = [row["day"] for row in series]
    assert series_days == sorted(series_days)
    assert series_days[0] <= incident["start_day"] and incident["end_day"] <= series_days[-1]
    assert any(row["is_anomaly"] for row in series)


def test_unknown_incident_is_404_with_a_message(client):
    r = client.get("/api/anomalies/incidents/1999-01-01-nothing-drop")
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "unknown incident '1999-01-01-nothing-drop'" in detail
    assert "GET /api/anomalies/incidents" in detail


def test_sensitivity_marks_the_current_threshold(client, reader):
    body = client.get("/api/anomalies/sensitivity").json()
    rows = body["data"]
    assert (
        body["count"] == len(rows) == reader.scalar(f"SELECT count(*) FROM {t.ANOMALY_SENSITIVITY}")
    )
    thresholds = [row["threshold"] for row in rows]
    assert thresholds == sorted(thresholds)
    assert [row["threshold"] for row in rows if row["is_current"]] == [body["current_threshold"]]
    # a stricter threshold never flags more points
    flagged = [row["flagged_points"] for row in rows]
    assert flagged == sorted(flagged, reverse=True)


def test_unscored_points_say_why(client, reader):
    body = client.get("/api/anomalies/unscored", params={"limit": 1000}).json()
    expected = reader.scalar(
        "SELECT count(DISTINCT (dimension, dimension_value, metric)) "
        f"FROM {t.ANOMALY_HISTORY} WHERE note IS NOT NULL"
    )
    assert body["total"] == expected > 0
    for row in body["data"]:
        assert row["reason"] and 0 < row["unscored_days"] <= row["days"]
        assert row["first_unscored_day"] <= row["last_unscored_day"]
    counts = [row["unscored_days"] for row in body["data"]]
    assert counts == sorted(counts, reverse=True)
    device = client.get("/api/anomalies/unscored", params={"dimension": "device"}).json()
    assert all(row["dimension"] == "device" for row in device["data"])


def test_flagged_points_carry_their_incident(client):
    every = client.get("/api/anomalies", params={"limit": 1000}).json()["data"]
    assert all("incident_id" in row and "note" in row for row in every)
    assert any(row["incident_id"] for row in every)
    assert all(row["note"] is None for row in every), "a flagged point has a score"


def test_incidents_missing_from_the_snapshot_is_503_naming_it(tmp_path, tiny_spec):
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, tmp_path, "no-incidents", skip=(t.INCIDENTS,))
    with TestClient(create_app(Settings(snapshot_dir=tmp_path))) as c:
        r = c.get("/api/anomalies/incidents")
        assert r.status_code == 503
        assert "incidents" in r.json()["detail"]
