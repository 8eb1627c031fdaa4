"""The Gemini resource against a local fake HTTP server, and the summary asset end to end."""

import json
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource

from ubap_assets.core import summary as s
from ubap_assets.core.summary_incidents import incident_facts, incident_sentence
from ubap_assets.defs.anomalies import assets as anomaly_assets
from ubap_assets.defs.anomalies import checks as anomaly_checks
from ubap_assets.defs.events.partitions import daily_partitions
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
    trend_assets.user_daily,
    trend_assets.daily_trends,
    trend_assets.weekly_trends,
    trend_assets.segment_trends,
    trend_assets.funnel_daily,
    trend_assets.funnel_dimensions,
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
    trend_checks.funnel_dimensions_reconcile,
    trend_checks.retention_cohorts_sane,
    anomaly_checks.anomaly_detection_f1,
    anomaly_checks.anomaly_history_finite,
    summary_assets.summary_has_narrative,
]
SOURCES = [
    dg.AssetSpec("events", partitions_def=daily_partitions),
    *(dg.AssetSpec(k) for k in ("pages", "user_segments")),
    dg.SourceAsset("injected_anomalies"),
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
    days = tiny_world.events["event_ts"].dt.date()
    result = dg.materialize(
        [*ASSETS, *CHECKS, *SOURCES],
        selection=[*ASSETS, *CHECKS],
        resources=resources(db, GeminiResource(api_key="")),
        tags={  # the day-partitioned trends over every day of the world, as a full run does
            "dagster/asset_partition_range_start": days.min().isoformat(),
            "dagster/asset_partition_range_end": days.max().isoformat(),
        },
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
    assert set(scores["detector"]) == {"ensemble", "rolling_3sigma"}
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
    definitions, facts = prompt.split("\nFACTS:\n")
    assert json.loads(facts)["as_of"] == str(row["as_of"])
    assert "Session conversion rate (% of sessions)" in definitions  # the glossary's names

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
        incidents = pl.DataFrame(  # noqa: F841 - until the incidents asset is in ASSETS
            [
                _incident(
                    "2026-02-03-conversion_rate-drop", date(2026, 2, 3), PERIOD_END, "high", DROP
                )
            ]
        )
        con.execute("CREATE TABLE IF NOT EXISTS incidents AS SELECT * FROM incidents")
        facts = s.gather_facts(con)
    assert facts.missing == []
    assert facts.data["predictions"]["users_above_50pct"] == 2
    assert facts.data["recommendations"]["lift_over_baseline"] == pytest.approx(1.5)
    text = s.deterministic_narrative(facts)
    assert "3 users scored, 2 with a purchase probability of 50% or more" in text
    assert (
        "served method hybrid (test NDCG@k 0.25; +150.0% vs the global_popularity baseline)" in text
    )
    assert s.ungrounded_numbers(text, facts) == []


# --- the anomaly part, told in incidents -----------------------------------------------------

PERIOD_START, PERIOD_END = date(2026, 2, 9), date(2026, 2, 15)


def _incident(incident_id: str, start: date, end: date, severity: str, text: str) -> dict:
    return {
        "incident_id": incident_id,
        "start_day": start,
        "end_day": end,
        "days": (end - start).days + 1,
        "ongoing": end == PERIOD_END,
        "headline_metric": "conversion_rate",
        "headline_label": "Conversion rate",
        "direction": "drop",
        "headline_dimension": "all",
        "headline_dimension_value": "all",
        "expected": 0.195,
        "observed": 0.121,
        "relative_change": -0.38,
        "peak_score": -9.5 if severity == "high" else -5.0,
        "severity": severity,
        "metrics": ["conversion_rate"],
        "n_points": 4,
        "n_scopes": 2,
        "top_contributor": "device=mobile",
        "top_share": 0.92,
        "description": text,
    }


def _history(notes: dict[tuple[str, str], str | None]) -> pl.DataFrame:
    """anomaly_history rows for every period day of each (scope, metric) key, with its note."""
    rows = []
    for (scope, metric), note in notes.items():
        dimension, _, value = scope.partition("=")
        for offset in range(7):
            rows.append(
                {
                    "day": PERIOD_START + timedelta(days=offset),
                    "dimension": dimension,
                    "dimension_value": value,
                    "metric": metric,
                    "note": note,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"note": pl.String})


def _anomaly_con(tables: dict[str, pl.DataFrame]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, frame in tables.items():
        con.register("frame_view", frame)
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame_view')
        con.unregister("frame_view")
    return con


def _anomaly_line(tables: dict[str, pl.DataFrame]) -> tuple[str, dict]:
    with _anomaly_con(tables) as con:
        data, _, _ = incident_facts(con, PERIOD_START, PERIOD_END)
    return incident_sentence(data, 7, lambda metric, x: f"{x:g}"), data


DROP = (
    "Conversion rate fell 38% (12.1% vs 19.5% expected) from 3 Feb to 15 Feb; mobile accounts "
    "for 92% of the drop."
)
SPIKE = "Sessions rose 45% (1,450 vs 1,000 expected) from 10 Feb to 11 Feb."


def test_summary_speaks_in_incidents_not_points():
    incidents = pl.DataFrame(
        [
            _incident(
                "2026-02-10-sessions-spike", date(2026, 2, 10), date(2026, 2, 11), "medium", SPIKE
            ),
            _incident(
                "2026-02-03-conversion_rate-drop", date(2026, 2, 3), PERIOD_END, "high", DROP
            ),
            _incident(
                "2026-01-10-sessions-spike", date(2026, 1, 10), date(2026, 1, 12), "low", "Old."
            ),
        ]
    )
    history = _history({("all=all", "sessions"): None, ("all=all", "conversion_rate"): None})
    line, data = _anomaly_line({"incidents": incidents, "anomaly_history": history})
    assert line.startswith("Incidents: 2 in the last 7 days (1 high severity, 1 ongoing):")
    # the most severe first, each with its own description; the old one is outside the period
    assert line.index("mobile accounts for 92% of the drop (high, ongoing).") < line.index(
        SPIKE[:-1]
    )
    assert "Old" not in line and "could not be scored" not in line
    assert data["incidents"]["count"] == 2
    assert [i["incident_id"] for i in data["incidents"]["top"]][0].endswith("conversion_rate-drop")


def test_summary_says_none_flagged_only_when_the_period_was_scored():
    empty = pl.DataFrame([_incident("x", date(2026, 1, 1), date(2026, 1, 2), "low", "Old.")])
    scored = _history({("all=all", "sessions"): None, ("device=mobile", "sessions"): None})
    line, _ = _anomaly_line({"incidents": empty, "anomaly_history": scored})
    assert line == "Incidents: none flagged in the last 7 days among 14 scored points."

    partly = _history(
        {
            ("all=all", "sessions"): None,
            ("device=tablet", "sessions"): "no sessions that day",
            ("device=tablet", "conversion_rate"): "no sessions that day",
        }
    )
    line, data = _anomaly_line({"incidents": empty, "anomaly_history": partly})
    assert line.startswith("Incidents: none flagged in the last 7 days among 7 scored points.")
    assert "14 of 21 points in the period could not be scored: no sessions that day" in line
    assert "Scopes with no scored point in the period: device=tablet." in line
    assert data["anomaly_coverage"]["unscored_scopes"] == [
        {"scope": "device=tablet", "reason": "no sessions that day"}
    ]

    nothing = _history({("all=all", "sessions"): "warm-up: 3 of 14 days of history"})
    line, _ = _anomaly_line({"incidents": empty, "anomaly_history": nothing})
    assert "none flagged" not in line
    assert line == (
        "Incidents: none could be scored in the last 7 days: "
        "warm-up: 3 of 14 days of history (7 points)."
    )


def test_summary_without_incidents_falls_back_to_points_or_says_missing():
    point = {
        "day": PERIOD_END,
        "dimension": "all",
        "dimension_value": "all",
        "metric": "sessions",
        "value": 1450.0,
        "expected": 1000.0,
        "lower": 900.0,
        "upper": 1100.0,
        "direction": "spike",
        "severity": "high",
        "score": 8.0,
    }
    line, data = _anomaly_line({"anomalies": pl.DataFrame([point])})
    assert line.startswith("Anomalies: 1 flagged (1 high severity); sessions spike on 2026-02-15")
    assert "incidents" not in data
    line, _ = _anomaly_line({"daily_trends": pl.DataFrame({"day": [PERIOD_END]})})
    assert line == "Anomalies: not available (the incidents and anomalies tables are missing)."


def test_recommendations_report_the_served_method_or_say_why_not():
    rows = {
        "method": ["global_popularity", "ease", "hybrid"],
        "is_baseline": [True, False, False],
        "status": ["ok"] * 3,
        "ndcg_at_k": [0.14, 0.30, 0.29],
        "ndcg_ci_low": [0.13, 0.29, 0.28],
        "ndcg_ci_high": [0.15, 0.31, 0.30],
        "users_evaluated": [7006] * 3,
        "is_served": [False, False, True],
        "note": [""] * 3,
    }
    facts = s._recommendation_facts(pl.DataFrame(rows))
    assert facts["served_method"] == "hybrid"  # the served one, not the best-scoring one
    assert (facts["ndcg_ci_low"], facts["users_evaluated"]) == (0.28, 7006)
    assert facts["best_baseline"] == "global_popularity"

    short = {
        **rows,
        "status": ["insufficient data"] * 3,
        "ndcg_at_k": [None] * 3,
        "note": ["insufficient data: 7 test users (< 100)"] * 3,
    }
    facts = s._recommendation_facts(pl.DataFrame(short))
    assert "served_method" not in facts and "7 test users" in facts["note"]
    text = _narrative(recommendations=facts)
    assert "Recommendations: not scored (insufficient data: 7 test users (< 100))." in text


def _narrative(**sections) -> str:
    """The deterministic text of a minimal period plus ``sections``."""
    kpis = dict.fromkeys(
        ("sessions", "avg_daily_active_users", "revenue", "conversion_rate", "bounce_rate"), 1.0
    )
    data = {
        "kpis": {**kpis, "sessions": 383, "new_users": 41},
        "relative_change": kpis,
        "period": {"days": 7, "start": "2011-12-02", "end": "2011-12-08"},
        **sections,
    }
    return s.deterministic_narrative(s.Facts(None, None, None, data=data))


def test_a_funnel_without_page_views_is_said_not_scored_as_zero():
    text = _narrative(funnel={"steps": {"page_view": 0, "purchase": 0}, "overall_conversion": None})
    assert "Funnel: no session in the period had a page view" in text
    assert "0.0% of sessions with a page view" not in text
