"""Every API endpoint through TestClient, on a snapshot built from the real generator and the
real trend/segment/anomaly code (tests.api_sample)."""

from datetime import timedelta

import duckdb
import pytest
from fastapi.testclient import TestClient

from tests.api_sample import publish_sample, sample_warehouse
from tests.conftest import SAMPLE_SNAPSHOT_ID
from ubap_api.main import create_app
from ubap_api.settings import Settings
from ubap_assets.warehouse.reader import open_reader

SNAPSHOT_ID = SAMPLE_SNAPSHOT_ID
HEADER = "X-UBAP-Snapshot"

LIST_ENDPOINTS = [
    "/api/trends/daily",
    "/api/trends/weekly",
    "/api/segments/trends",
    "/api/segments/list",
    "/api/predictions/segments",
    "/api/predictions/high-value/best",
    "/api/predictions/at-risk",
    "/api/predictions/models",
    "/api/recommendations/admin",
    "/api/recommendations/metrics",
    "/api/anomalies",
    "/api/anomalies/recent",
    "/api/anomalies/incidents",
    "/api/anomalies/unscored",
    "/api/funnels/daily",
    "/api/retention",
    "/api/retention/lifecycle",
]


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
def some_user(reader):
    """The user with the most events."""
    return reader.scalar(
        "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT 1"
    )


def test_health_needs_nothing_and_names_the_snapshot(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "snapshot_id": SNAPSHOT_ID,
        "detail": "",
        "not_refreshed": {},
    }
    assert r.headers[HEADER] == SNAPSHOT_ID


def test_meta_describes_the_snapshot(client, reader):
    r = client.get("/api/meta")
    assert r.status_code == 200
    body = r.json()
    assert body["snapshot_id"] == r.headers[HEADER] == SNAPSHOT_ID
    first, last = reader.rows(
        "SELECT min(event_ts)::DATE AS a, max(event_ts)::DATE AS b FROM events"
    )[0].values()
    assert body["data_start"] == first.isoformat()
    assert body["data_end"] == last.isoformat()
    assert {"users", "events", "daily_trends"} <= set(body["tables"])
    assert "model_cards" in body["missing_tables"]
    assert body["checks_total"] == len(body["checks"]) >= 1
    assert body["age_seconds"] >= 0


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_list_endpoints_page_with_totals(client, path):
    r = client.get(path, params={"limit": 3})
    assert r.status_code == 200, r.text
    assert r.headers[HEADER] == SNAPSHOT_ID
    body = r.json()
    assert body["limit"] == 3 and body["offset"] == 0
    assert body["count"] == len(body["data"]) == min(3, body["total"])
    # Recent anomalies may legitimately be none; every other list has rows in this world.
    assert body["total"] > 0 or path == "/api/anomalies/recent", f"{path} served no rows"
    # The next page continues where this one stopped.
    if body["total"] > 3:
        nxt = client.get(path, params={"limit": 3, "offset": 3}).json()
        whole = client.get(path, params={"limit": 6}).json()
        assert body["data"] + nxt["data"] == whole["data"]


def test_repeated_requests_are_identical_with_one_snapshot_header(client):
    first = client.get("/api/predictions/at-risk", params={"limit": 7})
    for _ in range(3):
        again = client.get("/api/predictions/at-risk", params={"limit": 7})
        assert again.content == first.content
        assert again.headers.get_list(HEADER) == [SNAPSHOT_ID]
        assert again.headers["content-length"] == str(len(first.content))


def test_daily_trends_filter_by_date_and_dimension(client, reader):
    days = reader.query("SELECT DISTINCT day FROM daily_trends ORDER BY day")["day"].to_list()
    start, end = days[3], days[9]
    r = client.get(
        "/api/trends/daily", params={"start": str(start), "end": str(end), "limit": 1000}
    )
    body = r.json()
    served = [row["day"] for row in body["data"]]
    assert served == [str(start + timedelta(days=i)) for i in range(7)]
    assert {row["dimension"] for row in body["data"]} == {"all"}
    expected = reader.scalar(
        "SELECT sum(sessions) FROM daily_trends WHERE dimension = 'all' AND day BETWEEN ? AND ?",
        [start, end],
    )
    assert sum(row["sessions"] for row in body["data"]) == expected

    by_device = client.get(
        "/api/trends/daily", params={"dimension": "device", "limit": 1000}
    ).json()
    assert {row["dimension"] for row in by_device["data"]} == {"device"}
    assert by_device["total"] == len(days) * len(
        {row["dimension_value"] for row in by_device["data"]}
    )
    mobile = client.get(
        "/api/trends/daily",
        params={"dimension": "device", "dimension_value": "mobile", "limit": 1000},
    ).json()
    assert mobile["total"] == len(days)


def test_weekly_trends_start_on_mondays(client):
    body = client.get("/api/trends/weekly", params={"limit": 100}).json()
    from datetime import date

    assert all(date.fromisoformat(row["week_start"]).weekday() == 0 for row in body["data"])


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-02-10", "end": "2026-02-01"},
        {"start": "not-a-date"},
        {"limit": 0},
        {"limit": 100000},
        {"offset": -1},
        {"dimension": "planet"},
    ],
)
def test_bad_parameters_are_422(client, params):
    r = client.get("/api/trends/daily", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_segments_summary_and_list_agree(client):
    summary = client.get("/api/segments/summary").json()
    listed = client.get("/api/segments/list", params={"limit": 100}).json()
    assert summary["k"] == listed["total"] == len(summary["segments"])
    assert summary["users"] == sum(s["users"] for s in listed["data"])
    assert sum(s["share"] for s in summary["segments"]) == pytest.approx(1.0)


def test_segment_trends_one_segment(client):
    listed = client.get("/api/segments/list").json()["data"]
    seg = listed[0]["segment_id"]
    assert isinstance(seg, int)
    body = client.get("/api/segments/trends", params={"segment_id": seg, "limit": 1000}).json()
    assert body["total"] > 0
    assert {row["segment_id"] for row in body["data"]} == {seg}
    # 'all' (the all-users series) answers null ids; no filter answers both kinds of rows.
    everyone = client.get("/api/segments/trends", params={"segment_id": "all"}).json()
    assert everyone["total"] > 0
    assert {(r["segment_id"], r["segment_name"]) for r in everyone["data"]} == {(None, "All users")}
    every = client.get("/api/segments/trends", params={"limit": 1000}).json()["data"]
    assert None in {r["segment_id"] for r in every} and seg in {r["segment_id"] for r in every}
    unknown = client.get("/api/segments/trends", params={"segment_id": 999})
    assert unknown.status_code == 404 and "/api/segments/list" in unknown.json()["detail"]


@pytest.mark.parametrize("path", ["/api/segments/trends", "/api/funnels", "/api/funnels/daily"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999", "ALL"])
def test_bad_segment_ids_are_422_saying_what_is_valid(client, path, value):
    r = client.get(path, params={"segment_id": value})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "segment_id"]
    assert "segment number" in error["msg"] and "'all'" in error["msg"]


def test_segment_id_is_an_integer_in_every_schema(client):
    """Responses and parameters alike: an integer (or null for all users), never a string."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in (
        "SegmentTrend",
        "SegmentProfile",
        "SegmentShare",
        "UserSegment",
        "Funnel",
        "SegmentPrediction",
        "ScoredUser",
    ):
        field = schemas[name]["properties"]["segment_id"]
        types = {t.get("type") for t in field.get("anyOf", [field])}
        assert types <= {"integer", "null"} and "integer" in types, (name, field)
    for path in ("/api/segments/trends", "/api/funnels", "/api/funnels/daily"):
        (param,) = [
            p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "segment_id"
        ]
        kinds = {(t.get("type"), t.get("const")) for t in param["schema"]["anyOf"]}
        assert kinds == {("integer", None), ("string", "all"), ("null", None)}, path


def test_segment_id_is_an_integer_in_the_prediction_responses(client, reader):
    outlook = client.get("/api/predictions/segments").json()["data"]
    listed = {row["segment_id"] for row in client.get("/api/segments/list").json()["data"]}
    assert outlook and {row["segment_id"] for row in outlook} == listed
    assert all(type(row["segment_id"]) is int for row in outlook)
    for path in ("/api/predictions/high-value/best", "/api/predictions/at-risk"):
        rows = client.get(path, params={"limit": 20}).json()["data"]
        assert rows, path
        for row in rows:
            assert type(row["segment_id"]) is int, (path, row["segment_id"])
            assert row["segment_id"] == reader.user_segment(row["user_id"])["segment_id"]


def test_predictions(client, reader):
    hv = client.get("/api/predictions/high-value/best", params={"limit": 50}).json()
    ranks = [row["conversion_rank"] for row in hv["data"]]
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert hv["total"] == reader.scalar("SELECT count(*) FROM user_predictions")
    assert all(isinstance(row["reasons"], list) and row["reasons"] for row in hv["data"])
    # The sample's scorer is no pipeline family: every family is then "fitted, not serving".
    served = reader.scoring_models()["conversion"]
    for family in ("logistic_regression", "random_forest", "xgboost"):
        other = client.get(f"/api/predictions/high-value/{family}")
        assert other.status_code == 404, other.text
        assert family in other.json()["detail"] and f"'{served}'" in other.json()["detail"]
    filtered = client.get(
        "/api/predictions/high-value/best", params={"min_probability": 0.3}
    ).json()
    assert filtered["total"] < hv["total"]

    for bad in ("no_such_model", "Bad-Name!", "BEST", "true_propensity"):
        invalid = client.get(f"/api/predictions/high-value/{bad}")
        assert invalid.status_code == 422, (bad, invalid.text)
        (error,) = invalid.json()["detail"]
        assert error["loc"] == ["path", "model"]
        assert "'best'" in error["msg"] and "'xgboost'" in error["msg"], error["msg"]

    risk = client.get("/api/predictions/at-risk", params={"limit": 1000}).json()
    assert risk["total"] == reader.scalar("SELECT count(*) FROM user_predictions WHERE at_risk")
    assert all(row["at_risk"] for row in risk["data"])
    ranks = [row["at_risk_rank"] for row in risk["data"]]
    assert ranks == sorted(ranks)

    segs = client.get("/api/predictions/segments").json()
    assert sum(s["users"] for s in segs["data"]) == reader.scalar(
        "SELECT count(*) FROM user_predictions JOIN user_segments USING (user_id)"
    )


def test_user_recommendations(client, some_user):
    r = client.get(f"/api/recommendations/users/{some_user}", params={"limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == some_user
    assert [rec["rank"] for rec in body["data"]] == [1, 2, 3, 4, 5]
    assert all(rec["reason"] for rec in body["data"])


def test_page_recommendations(client, reader):
    page_id = reader.scalar("SELECT page_id FROM pages ORDER BY page_id LIMIT 1")
    body = client.get(f"/api/recommendations/pages/{page_id}").json()
    assert body["page"]["page_id"] == page_id
    assert body["count"] == 10
    assert page_id not in {row["similar_page_id"] for row in body["data"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/users/nobody-here",
        "/api/recommendations/users/nobody-here",
        "/api/recommendations/pages/nowhere-page",
    ],
)
def test_unknown_ids_are_404_with_a_message(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "unknown" in r.json()["detail"]
    assert r.headers[HEADER] == SNAPSHOT_ID


def test_admin_insights_filters(client):
    high = client.get("/api/recommendations/admin", params={"severity": "high"}).json()
    assert all(row["severity"] == "high" for row in high["data"])
    assert client.get("/api/recommendations/admin", params={"kind": "nope"}).status_code == 422


def test_anomalies(client, reader):
    recent = client.get("/api/anomalies/recent", params={"limit": 1000}).json()
    assert recent["total"] == reader.scalar("SELECT count(*) FROM anomalies")
    every = client.get("/api/anomalies", params={"limit": 1000}).json()
    assert every["total"] == reader.scalar("SELECT count(*) FROM anomaly_history WHERE is_anomaly")
    assert all(row["is_anomaly"] for row in every["data"])
    days = [row["day"] for row in every["data"]]
    assert days == sorted(days, reverse=True)
    metric = every["data"][0]["metric"]
    one = client.get("/api/anomalies", params={"metric": metric, "limit": 1000}).json()
    assert {row["metric"] for row in one["data"]} == {metric}


def test_summary(client):
    body = client.get("/api/summary/llm").json()
    assert body["narrative"]
    assert body["mode"] in {"llm", "deterministic"}
    assert isinstance(body["facts"], dict) and body["facts"]


def test_funnel_adds_up(client, reader):
    body = client.get("/api/funnels").json()
    steps = body["steps"]
    assert [s["step_index"] for s in steps] == [1, 2, 3, 4, 5]
    sessions = [s["sessions"] for s in steps]
    assert sessions == sorted(sessions, reverse=True)
    assert steps[0]["overall_conversion"] == 1.0
    assert sessions[0] == reader.scalar(
        "SELECT sum(sessions) FROM funnel_daily WHERE step_index = 1"
    )
    for prev, step in zip(steps, steps[1:], strict=False):
        assert step["drop_off"] == prev["sessions"] - step["sessions"]

    assert body["segment_id"] is None
    seg = reader.scalar("SELECT min(segment_id) FROM funnel_segments WHERE segment_id <> 'all'")
    by_seg = client.get("/api/funnels", params={"segment_id": seg}).json()
    assert by_seg["segment_id"] == int(seg)
    assert by_seg["steps"][0]["sessions"] < sessions[0]
    assert client.get("/api/funnels", params={"segment_id": "all"}).json() == body
    assert client.get("/api/funnels", params={"segment_id": "999"}).status_code == 404
    # A range without data is an empty funnel, not an error (found by the schema fuzzer).
    empty = client.get("/api/funnels", params={"end": "2000-01-01"})
    assert empty.status_code == 200 and empty.json()["steps"] == []


def test_retention_and_lifecycle(client):
    cohorts = client.get("/api/retention", params={"limit": 1000}).json()["data"]
    assert all(row["retention_rate"] == 1.0 for row in cohorts if row["weeks_since"] == 0)
    life = client.get("/api/retention/lifecycle", params={"limit": 1000}).json()["data"]
    assert {row["state"] for row in life} <= {"new", "returning", "resurrecting", "dormant"}


def test_user_detail(client, reader, some_user):
    r = client.get(f"/api/users/{some_user}", params={"activity": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["user_id"] == some_user
    assert body["segment"]["segment_name"]
    assert body["predictions"]["reasons"]
    activity = body["recent_activity"]
    assert len(activity) == 7
    stamps = [a["event_ts"] for a in activity]
    assert stamps == sorted(stamps, reverse=True)
    latest = reader.scalar("SELECT max(event_ts) FROM events WHERE user_id = ?", [some_user])
    assert stamps[0] == latest.isoformat() + "Z"
    assert len(body["recommendations"]) == 5


def test_no_snapshot_is_503_naming_the_command(tmp_path):
    with TestClient(create_app(Settings(snapshot_dir=tmp_path / "empty"))) as c:
        r = c.get("/api/trends/daily")
        assert r.status_code == 503
        assert "make up" in r.json()["detail"]
        assert r.headers[HEADER] == "none"
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "no_snapshot"


def test_missing_table_is_503_naming_it(tmp_path, tiny_spec):
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, tmp_path, "partial", skip=("summary", "user_recommendations"))
    with TestClient(create_app(Settings(snapshot_dir=tmp_path))) as c:
        r = c.get("/api/summary/llm")
        assert r.status_code == 503
        assert "'summary'" in r.json()["detail"]
        # A page that only partly needs the missing table still answers.
        uid = c.get("/api/predictions/high-value/best").json()["data"][0]["user_id"]
        detail = c.get(f"/api/users/{uid}")
        assert detail.status_code == 200 and detail.json()["recommendations"] == []


def test_bearer_token_guards_everything_but_health(snapshots):
    app = create_app(Settings(snapshot_dir=snapshots, api_token="s3cret"))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        ok = c.get("/api/meta", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # A response cached for an authorized caller is never replayed to anybody else.
        denied = c.get("/api/meta")
        assert denied.status_code == 401
        assert "UBAP_API_TOKEN" in denied.json()["detail"]
        wrong = c.get("/api/meta", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_cors_allows_only_the_dashboard_by_default(client):
    allowed = client.get("/health", headers={"Origin": "http://localhost:8501"})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8501"
    other = client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_origins_are_configurable(snapshots):
    settings = Settings(snapshot_dir=snapshots, cors_origins="https://bi.example.com")
    with TestClient(create_app(settings)) as c:
        r = c.get("/health", headers={"Origin": "https://bi.example.com"})
        assert r.headers["access-control-allow-origin"] == "https://bi.example.com"


def test_openapi_has_a_response_model_on_every_route(client):
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        schema = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("$ref") or schema.get("type") == "object", path
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
