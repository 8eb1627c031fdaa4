"""The Gemini resource against a local fake HTTP server, and the summary asset end to end."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.core import summary as s
from ubap_assets.defs.anomalies import assets as anomaly_assets
from ubap_assets.defs.anomalies import checks as anomaly_checks
from ubap_assets.defs.summary import assets as summary_assets
from ubap_assets.defs.trends import assets as trend_assets
from ubap_assets.defs.trends import checks as trend_checks
from ubap_assets.lib.llm import GeminiResource, LLMError
from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager


def answer(text: str) -> dict:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ]
    }


def error(code: int, status: str) -> dict:
    return {"error": {"code": code, "message": f"fake {status}", "status": status}}


class FakeGemini:
    """A local HTTP server speaking the generateContent wire format, scripted per request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict | bytes, float]] = []
        self.requests: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                fake.requests.append((self.path, json.loads(body or b"{}")))
                status, payload, delay = (
                    fake.script.pop(0) if fake.script else (200, answer("default answer"), 0.0)
                )
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def resource(self, **overrides) -> GeminiResource:
        options = dict(
            api_key="test-key",
            base_url=self.url,
            timeout_s=1.0,
            max_attempts=3,
            retry_initial_delay_s=0.01,
            retry_max_delay_s=0.05,
        )
        options.update(overrides)
        return GeminiResource(**options)


@pytest.fixture
def fake():
    server = FakeGemini()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_success_sends_model_prompt_and_system(fake, monkeypatch):
    monkeypatch.setenv("UBAP_GEMINI_MODEL", "gemini-test-model")
    fake.script = [(200, answer("All good."), 0.0)]
    text = fake.resource().generate("the facts", system="be brief")
    assert text == "All good."
    path, body = fake.requests[0]
    assert path.endswith("/models/gemini-test-model:generateContent")
    assert body["contents"][0]["parts"][0]["text"] == "the facts"
    assert body["systemInstruction"]["parts"][0]["text"] == "be brief"


def test_generation_settings_reach_the_server(fake):
    fake.resource(thinking_budget=0, temperature=0.0).generate("x")
    config = fake.requests[0][1]["generationConfig"]
    thinking = config["thinkingConfig"]  # the client sends this one in snake case
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    assert config["temperature"] == 0.0 and config["maxOutputTokens"] == 4096


def test_429_is_retried(fake):
    fake.script = [(429, error(429, "RESOURCE_EXHAUSTED"), 0.0), (200, answer("second try"), 0.0)]
    assert fake.resource().generate("x") == "second try"
    assert len(fake.requests) == 2


def test_500_is_retried_then_reported(fake):
    fake.script = [(500, error(500, "INTERNAL"), 0.0)] * 3
    with pytest.raises(LLMError, match="HTTP 500"):
        fake.resource().generate("x")
    assert len(fake.requests) == 3


def test_timeout_is_reported(fake):
    fake.script = [(200, answer("too late"), 1.5)] * 2
    started = time.monotonic()
    with pytest.raises(LLMError, match="timeout"):
        fake.resource(timeout_s=0.3, max_attempts=2).generate("x")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("payload", [b"{not json", {"candidates": []}, {"unexpected": 1}])
def test_malformed_response_is_reported(fake, payload):
    fake.script = [(200, payload, 0.0)]
    with pytest.raises(LLMError, match="malformed"):
        fake.resource(max_attempts=1).generate("x")


def test_no_key_means_disabled(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    resource = GeminiResource()
    assert not resource.enabled
    assert resource.resolved_model() == "gemini-2.5-flash"
    with pytest.raises(LLMError, match="GEMINI_API_KEY"):
        resource.generate("x")


def test_ungrounded_numbers_are_spotted():
    facts = s.Facts(None, None, None, data={"kpis": {"sessions": 1234, "conversion_rate": 0.0512}})
    assert s.ungrounded_numbers("1,234 sessions, conversion 5.1%", facts) == []
    assert s.ungrounded_numbers("1,234 sessions and 98,765 page views", facts) == ["98,765"]


# --- the assets end to end on the tiny world --------------------------------------------------

ASSETS = [
    trend_assets.sessions,
    trend_assets.daily_trends,
    trend_assets.weekly_trends,
    trend_assets.segment_trends,
    trend_assets.funnel_daily,
    trend_assets.funnel_segments,
    trend_assets.retention_cohorts,
    trend_assets.lifecycle_weekly,
    anomaly_assets.anomaly_history,
    anomaly_assets.anomalies,
    anomaly_assets.anomaly_scores,
    summary_assets.summary,
]
CHECKS = [
    trend_checks.daily_trends_reconcile,
    trend_checks.weekly_trends_reconcile,
    trend_checks.segment_trends_reconcile,
    trend_checks.funnel_daily_monotonic,
    trend_checks.retention_cohorts_sane,
    anomaly_checks.anomaly_detection_f1,
    anomaly_checks.anomaly_history_finite,
    summary_assets.summary_has_narrative,
]
SOURCES = [dg.AssetSpec(k) for k in ("events", "pages", "user_segments")] + [
    dg.SourceAsset("injected_anomalies")
]


def resources(db: str, llm: GeminiResource) -> dict:
    return {
        "io_manager": DuckDBWarehouseIOManager(database=db),
        "warehouse": DuckDBResource(database=db),
        "llm": llm,
    }


@pytest.fixture(scope="module")
def warehouse(tiny_world, tmp_path_factory):
    """A warehouse with the tiny world's raw tables and every trend/anomaly/summary asset."""
    db = str(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")
    with duckdb.connect(db) as con:
        for name, frame in (
            ("events", tiny_world.events),
            ("pages", tiny_world.pages),
            ("injected_anomalies", tiny_world.anomalies),
        ):
            con.register("frame_view", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame_view")
            con.unregister("frame_view")
    result = dg.materialize(
        [*ASSETS, *CHECKS, *SOURCES],
        selection=[*ASSETS, *CHECKS],
        resources=resources(db, GeminiResource(api_key="")),
    )
    return db, result


def read(db: str, table: str) -> pl.DataFrame:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(f"SELECT * FROM {table}").pl()


@pytest.mark.slow
def test_pipeline_materializes_and_checks_pass(warehouse):
    db, result = warehouse
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert len(checks) == len(CHECKS)
    # The F1 check may warn on a world this small; every other check must pass.
    assert all(passed for name, passed in checks.items() if name != "anomaly_detection_f1")
    scores = read(db, "anomaly_scores")
    assert set(scores["detector"]) == {"seasonal", "level", "ensemble"}
    meta = result.asset_materializations_for_node("anomaly_scores")[0].metadata
    assert "overall_f1" in meta


@pytest.mark.slow
def test_summary_without_key_is_deterministic_and_says_what_is_missing(warehouse):
    db, _ = warehouse
    row = read(db, "summary").row(0, named=True)
    assert row["mode"] == "deterministic" and row["model"] == "none"
    assert "GEMINI_API_KEY" in row["fallback_reason"]
    assert row["narrative"].startswith("_Deterministic summary (no LLM)")
    assert "user_predictions" in row["missing_tables"]
    assert "Predictions: not available" in row["narrative"]
    facts = json.loads(row["facts_json"])
    # Grounded: the sessions figure in the text is the one in the facts.
    assert f"{facts['kpis']['sessions']:,} sessions" in row["narrative"]
    assert row["run_id"] in row["narrative"]


@pytest.mark.slow
def test_summary_with_gemini_and_with_a_failing_gemini(warehouse, fake):
    db, _ = warehouse
    fake.script = [(200, answer("Sessions were steady this week."), 0.0)]
    result = dg.materialize([summary_assets.summary], resources=resources(db, fake.resource()))
    row = read(db, "summary").row(0, named=True)
    assert result.success and row["mode"] == "llm"
    assert row["narrative"].startswith("Sessions were steady this week.")
    assert "Written by Gemini" in row["narrative"] and "daily_trends" in row["source_tables"]
    prompt = fake.requests[-1][1]["contents"][0]["parts"][0]["text"]
    assert json.loads(prompt.removeprefix("FACTS:\n"))["as_of"] == str(row["as_of"])

    fake.script = [(500, error(500, "INTERNAL"), 0.0)] * 3
    dg.materialize([summary_assets.summary], resources=resources(db, fake.resource()))
    row = read(db, "summary").row(0, named=True)
    assert row["mode"] == "deterministic"
    assert "Gemini failed: HTTP 500" in row["fallback_reason"]


@pytest.mark.slow
def test_summary_uses_the_other_helpers_tables_when_present(warehouse, tmp_path):
    import shutil

    db = str(tmp_path / "copy.duckdb")
    shutil.copy(warehouse[0], db)
    profiles = pl.DataFrame(  # noqa: F841 - DuckDB replacement scans below
        {
            "segment_id": [0, 1],
            "segment_name": ["Loyal buyers", "Bouncers"],
            "users": [300, 500],
            "share": [0.375, 0.625],
            "conversion_rate": [0.4, 0.02],
        }
    )
    predictions = pl.DataFrame(  # noqa: F841
        {
            "user_id": ["a", "b", "c"],
            "conversion_probability": [0.9, 0.6, 0.1],
            "conversion_rank": [1, 2, 3],
            "at_risk": [False, True, True],
            "reason_1": ["many visits", "many visits", "few visits"],
        }
    )
    rec = pl.DataFrame(  # noqa: F841
        {
            "method": ["global_popularity", "hybrid"],
            "is_baseline": [True, False],
            "k": [10, 10],
            "ndcg_at_k": [0.1, 0.25],
            "hr_at_k": [0.3, 0.5],
            "coverage": [0.1, 0.6],
        }
    )
    with duckdb.connect(db) as con:
        con.execute("CREATE TABLE segment_profiles AS SELECT * FROM profiles")
        con.execute("CREATE TABLE user_predictions AS SELECT * FROM predictions")
        con.execute("CREATE TABLE rec_evaluation AS SELECT * FROM rec")
        facts = s.gather_facts(con)
    assert facts.missing == []
    assert facts.data["predictions"]["users_above_50pct"] == 2
    assert facts.data["recommendations"]["lift_over_baseline"] == pytest.approx(1.5)
    text = s.deterministic_narrative(facts)
    assert "3 users scored, 2 with a purchase probability of 50% or more" in text
    assert "best method hybrid (NDCG@k 0.25, +150.0% vs the global_popularity baseline)" in text
    assert s.ungrounded_numbers(text, facts) == []
