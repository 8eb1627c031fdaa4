"""The anomaly detectors, their ensemble and their scoring against planted anomalies."""

from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from ubap_assets.core import anomaly, trends
from ubap_assets.core.schema import INJECTED_ANOMALIES_SCHEMA
from ubap_assets.core.synthetic import WEEKDAY_FACTOR, WorldSpec, generate_world

START = date(2026, 1, 5)  # a Monday: day i has the weekday factor WEEKDAY_FACTOR[i % 7]


def seasonal_counts(days: int, seed: int = 1, level: float = 2000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    return rng.poisson(level * WEEKDAY_FACTOR[t % 7] * (1 + 0.002 * t)).astype(float)


def daily_frame(values: dict[str, np.ndarray]) -> pl.DataFrame:
    """A daily_trends-shaped frame (dimension 'all') holding the given metric series."""
    n = len(next(iter(values.values())))
    base = {m: np.full(n, 1000.0) for m in anomaly.MONITORED}
    base["conversion_rate"] = np.full(n, 0.1)
    base["bounce_rate"] = np.full(n, 0.3)
    base.update(values)
    return pl.DataFrame(
        {
            "day": [START + timedelta(days=i) for i in range(n)],
            "dimension": ["all"] * n,
            "dimension_value": ["all"] * n,
            **base,
            "is_complete": [True] * n,
        }
    )


def _finite(history: pl.DataFrame) -> None:
    for c, dtype in history.schema.items():
        assert history[c].null_count() == 0, c
        if dtype == pl.Float64:
            assert history[c].is_finite().all(), c


def test_spike_and_drop_are_found_with_direction_and_range():
    x = seasonal_counts(70)
    x[50] *= 0.5  # a Sunday-like drop on a weekday
    x[60] *= 1.6
    history = anomaly.detect(
        anomaly.series_frame(daily_frame({"sessions": x})), anomaly.DetectorSettings()
    )
    _finite(history)
    sessions = history.filter(pl.col("metric") == "sessions")
    flagged = sessions.filter(pl.col("is_anomaly"))
    assert flagged["day"].to_list() == [START + timedelta(days=50), START + timedelta(days=60)]
    assert flagged["direction"].to_list() == ["drop", "spike"]
    for row in flagged.iter_rows(named=True):
        assert not row["lower"] <= row["value"] <= row["upper"]
        # The expectation is the seasonal level of that weekday, within a few percent.
        i = (row["day"] - START).days
        seasonal_level = 2000 * WEEKDAY_FACTOR[i % 7] * (1 + 0.002 * i)
        assert row["expected"] == pytest.approx(seasonal_level, rel=0.05)
        assert row["severity"] in ("low", "medium", "high")
    # The weekly cycle itself (weekends ~20% lower) is never an anomaly.
    assert sessions.filter(pl.col("has_baseline") & ~pl.col("is_anomaly")).height > 40


def test_sensitivity_is_the_threshold():
    x = seasonal_counts(70, seed=4)
    x[55] *= 1.12  # a mild bump: flagged only by a sensitive detector
    frame = anomaly.series_frame(daily_frame({"sessions": x}))

    def flagged(threshold: float) -> int:
        h = anomaly.detect(frame, anomaly.DetectorSettings(threshold=threshold))
        return h.filter(pl.col("is_anomaly") & (pl.col("metric") == "sessions")).height

    assert flagged(2.0) >= flagged(4.0)
    assert flagged(50.0) == 0


def test_day_without_events_is_a_drop():
    x = seasonal_counts(49)
    x[45] = 0.0
    h = anomaly.detect(
        anomaly.series_frame(daily_frame({"sessions": x, "events": x * 10})),
        anomaly.DetectorSettings(),
    )
    _finite(h)
    flags = h.filter(pl.col("is_anomaly") & (pl.col("day") == START + timedelta(days=45)))
    assert set(flags["metric"].to_list()) >= {"sessions", "events"}
    assert set(flags["direction"].to_list()) == {"drop"}


def test_constant_and_zero_series_do_not_divide_by_zero():
    n = 40
    history = anomaly.detect(
        anomaly.series_frame(
            daily_frame({"conversion_rate": np.zeros(n), "revenue": np.full(n, 5.0)})
        ),
        anomaly.DetectorSettings(min_daily_sessions=0),
    )
    _finite(history)
    assert history.filter(pl.col("is_anomaly")).height == 0


def test_history_shorter_than_the_window_is_warm_up():
    settings = anomaly.DetectorSettings()
    series = anomaly.series_frame(daily_frame({"sessions": seasonal_counts(10)}))
    history = anomaly.detect(series, settings)
    _finite(history)
    assert not history["has_baseline"].any() and not history["is_anomaly"].any()
    notes = anomaly.history_notes(series, history, settings)
    assert any("shorter than the detector window" in n for n in notes)
    assert anomaly.latest(history, 7).height == 0


def test_small_scopes_are_not_scored():
    x = seasonal_counts(60, level=10.0)
    x[50] = 60.0
    history = anomaly.detect(
        anomaly.series_frame(daily_frame({"sessions": x})), anomaly.DetectorSettings()
    )
    assert not history["has_baseline"].any()


def test_incomplete_days_are_left_out():
    frame = daily_frame({"sessions": seasonal_counts(30)}).with_columns(
        (pl.col("day") < START + timedelta(days=29)).alias("is_complete")
    )
    history = anomaly.detect(anomaly.series_frame(frame), anomaly.DetectorSettings())
    assert history["day"].max() == START + timedelta(days=28)


def test_invalid_settings_are_named():
    problems = anomaly.DetectorSettings(threshold=0, min_scale_points=40).problems()
    assert any("threshold" in p for p in problems)
    assert any("min_scale_points" in p for p in problems)


def _history(flags: list[tuple[date, str, float]]) -> pl.DataFrame:
    days = [START + timedelta(days=i) for i in range(30)]
    rows = []
    for d in days:
        for m in ("sessions", "conversion_rate"):
            score = next((s for fd, fm, s in flags if fd == d and fm == m), 0.0)
            rows.append(
                {
                    "day": d,
                    "dimension": "all",
                    "metric": m,
                    "score": score,
                    "seasonal_score": score,
                    "level_score": score,
                    "is_anomaly": score != 0.0,
                    "seasonal_flag": score != 0.0,
                    "level_flag": score != 0.0,
                    "has_baseline": True,
                }
            )
    return pl.DataFrame(rows)


def test_scoring_counts_hits_misses_and_false_positives():
    d = [START + timedelta(days=i) for i in range(30)]
    injected = pl.DataFrame(
        [
            {
                "anomaly_date": d[10],
                "kind": "campaign_spike",
                "metric": "sessions",
                "direction": "spike",
                "description": "",
            },
            {
                "anomaly_date": d[20],
                "kind": "checkout_outage",
                "metric": "conversion_rate",
                "direction": "drop",
                "description": "",
            },
            {
                "anomaly_date": d[25],
                "kind": "checkout_outage",
                "metric": "conversion_rate",
                "direction": "drop",
                "description": "",
            },
        ],
        schema=INJECTED_ANOMALIES_SCHEMA,
    )
    history = _history(
        [
            (d[10], "sessions", 9.0),  # hit
            (d[20], "conversion_rate", -8.0),  # hit
            (d[20], "sessions", -5.0),  # side effect on a planted day: not a false positive
            (d[5], "sessions", 6.0),  # false positive for campaign_spike
            # d[25] missed
        ]
    )
    scores, notes = anomaly.score_detection(history, injected)
    assert notes == []
    ens = {
        r["kind"]: r for r in scores.filter(pl.col("detector") == "ensemble").iter_rows(named=True)
    }
    assert (ens["campaign_spike"]["detected"], ens["campaign_spike"]["false_positives"]) == (1, 1)
    assert ens["campaign_spike"]["precision"] == pytest.approx(0.5)
    assert ens["checkout_outage"]["recall"] == pytest.approx(0.5)
    assert ens["checkout_outage"]["precision"] == pytest.approx(1.0)
    assert (ens["overall"]["injected"], ens["overall"]["detected"]) == (3, 2)
    assert ens["overall"]["f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))


def test_scoring_is_skipped_without_ground_truth():
    scores, notes = anomaly.score_detection(
        _history([]), pl.DataFrame(schema=INJECTED_ANOMALIES_SCHEMA)
    )
    assert scores.height == 0
    assert "scoring skipped" in notes[0]


@pytest.mark.slow
def test_planted_anomalies_are_found_in_a_synthetic_world():
    world = generate_world(WorldSpec(users=5000, days=70, seed=3, start_date=START))
    con = duckdb.connect()
    events, pages = world.events, world.pages  # noqa: F841 - DuckDB replacement scans
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    con.execute("CREATE TABLE pages AS SELECT * FROM pages")
    trends.build_sessions(con)
    history = anomaly.detect(
        anomaly.series_frame(trends.daily_trends(con)), anomaly.DetectorSettings()
    )
    _finite(history)
    scores, _ = anomaly.score_detection(history, world.anomalies)
    overall = scores.filter((pl.col("detector") == "ensemble") & (pl.col("kind") == "overall"))
    assert overall["injected"][0] == world.anomalies.height >= 3
    assert overall["f1"][0] >= 0.8
    con.close()
