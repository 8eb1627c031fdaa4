"""Incidents: grouping, headline, root cause, the sensitivity simulation, incident-level scoring
against planted anomalies, and a small site where a two-week conversion drop is an incident."""

from datetime import timedelta

import dagster as dg
import polars as pl

from tests.anomaly_sites import START, detect_all, generated_site, planted, site_days
from ubap_assets.core import anomalies
from ubap_assets.core.anomalies.evaluation import match
from ubap_assets.core.schema import INJECTED_ANOMALIES_SCHEMA

SETTINGS = anomalies.DetectorSettings()
DEVICES = {"mobile": 0.55, "desktop": 0.35, "tablet": 0.10}


def _mobile_drop(first: int, last: int, factor: float = 0.6):
    return lambda i, device: factor if device == "mobile" and first <= i <= last else 1.0


def test_a_mobile_conversion_drop_is_one_incident_with_mobile_as_its_cause():
    daily = site_days(
        84, 3000, 0.05, seed=7, scopes=DEVICES, conversion_factor=_mobile_drop(56, 69)
    )
    _, history, incidents, contributors = detect_all({"daily": daily})
    assert incidents.height == 1, incidents
    incident = incidents.row(0, named=True)
    start = START + timedelta(days=56)
    assert start <= incident["start_day"] <= start + timedelta(days=2)
    assert incident["end_day"] >= START + timedelta(days=67)
    assert incident["direction"] == "drop" and "conversion_rate" in incident["metrics"]
    assert incident["incident_id"] == f"{incident['start_day']}-{incident['headline_metric']}-drop"
    assert incident["top_contributor"] == "device=mobile" and incident["top_share"] > 0.8
    assert "mobile accounts for" in incident["description"]
    assert incident["relative_change"] < -0.1 and abs(incident["peak_score"]) <= 50
    # The ranking: mobile first, its share the largest, shares of a dimension add up to one.
    ranked = contributors.filter(
        (pl.col("metric") == "conversion_rate") & (pl.col("dimension") == "device")
    ).sort("rank")
    assert ranked["dimension_value"][0] == "mobile" and ranked["rank"][0] == 1
    assert abs(ranked["share"].sum() - 1.0) < 1e-9
    assert ranked["change"][0] < 0
    # Every flagged point of the incident carries its id; unflagged points none.
    flagged = history.filter(pl.col("is_anomaly"))
    assert (flagged["incident_id"] == incident["incident_id"]).all()
    assert history.filter(~pl.col("is_anomaly"))["incident_id"].null_count() == (
        history.filter(~pl.col("is_anomaly")).height
    )


def test_the_incident_id_is_stable_from_one_night_to_the_next():
    daily = site_days(
        80, 3000, 0.05, seed=7, scopes=DEVICES, conversion_factor=_mobile_drop(56, 69)
    )
    ids = []
    for last in (START + timedelta(days=75), START + timedelta(days=79)):
        _, _, incidents, _ = detect_all({"daily": daily.filter(pl.col("day") <= last)})
        ids.append(incidents["incident_id"].to_list())
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_flags_a_day_apart_are_one_incident_farther_apart_two():
    days = [START + timedelta(days=d) for d in (10, 11, 13, 20, 21, 22)]
    flagged = pl.DataFrame(
        {
            "day": days,
            "dimension": ["all"] * 6,
            "dimension_value": ["all"] * 6,
            "metric": ["sessions"] * 6,
            "score": [5.0] * 6,
        }
    )
    grouped = anomalies.incidents.group_points(flagged, 4.0, SETTINGS)
    assert grouped.group_by("group").agg(pl.col("day").min()).height == 2
    # A lone weak point is not an incident; a lone strong one is.
    lone = flagged.head(1)
    assert anomalies.incidents.group_points(lone, 4.0, SETTINGS).height == 0
    strong = lone.with_columns(pl.lit(7.0).alias("score"))
    assert anomalies.incidents.group_points(strong, 4.0, SETTINGS).height == 1


def test_the_sensitivity_simulation_counts_fewer_points_at_higher_thresholds():
    daily = site_days(
        84, 3000, 0.05, seed=7, scopes=DEVICES, conversion_factor=_mobile_drop(56, 69)
    )
    _, history, incidents, _ = detect_all({"daily": daily})
    table = anomalies.sensitivity(history, SETTINGS)
    assert table["threshold"].to_list() == sorted(table["threshold"].to_list())
    assert table["flagged_points"].is_sorted(descending=True)
    current = table.filter(pl.col("is_current")).row(0, named=True)
    assert current["threshold"] == SETTINGS.threshold
    assert current["incidents"] == incidents.height


def test_scoring_counts_caught_missed_and_false_incidents():
    d = [START + timedelta(days=i) for i in range(60)]
    spans = pl.DataFrame(
        {
            "group": [0, 1, 2],
            "start_day": [d[11], d[30], d[55]],
            "end_day": [d[15], d[33], d[57]],
            "families": [["conversion"], ["traffic"], ["engagement"]],
        }
    )
    truth = pl.DataFrame(
        [
            planted(d[10], 7, "conversion_drop", "conversion_rate", -0.3),  # caught, 1 day late
            planted(d[30], 5, "traffic_spike", "sessions", 0.4),  # caught the same day
            planted(d[40], 5, "conversion_drop", "conversion_rate", -0.3),  # missed
        ],
        schema=INJECTED_ANOMALIES_SCHEMA,
    )
    delays, false_incidents = match(spans, truth)
    assert delays == [1, 0, None]
    assert false_incidents == 1  # d[55]: past the missed one and its grace days


def test_no_ground_truth_means_no_scores():
    history = anomalies.detect(anomalies.monitored_series(site_days(40, 100, 0.1)), SETTINGS)
    empty = pl.DataFrame(schema=INJECTED_ANOMALIES_SCHEMA)
    scores, notes = anomalies.score_detection(history, empty, SETTINGS)
    assert scores.height == 0 and "no ground truth" in notes[0]


def test_a_small_site_sees_a_two_week_conversion_drop_as_an_incident():
    """~20 sessions a day for six months (the generator, 220 users); checkout fails for 40% of
    buyers for two weeks: a handful of purchases a day, yet one incident, and nothing else."""
    drop_start = START + timedelta(days=120)
    frames = generated_site(
        users=220,
        days=180,
        seed=11,
        plan=[planted(drop_start, 14, "conversion_drop", "conversion_rate", -0.4)],
    )
    sessions = frames["daily"].filter(pl.col("dimension") == "all")["sessions"].mean()
    assert 12 <= sessions <= 30
    _, history, incidents, _ = detect_all(frames)
    assert history["score"].abs().max() <= 50
    during = (pl.col("start_day") <= drop_start + timedelta(days=13)) & (
        pl.col("end_day") >= drop_start
    )
    caught = incidents.filter(during)
    assert caught.height >= 1, incidents
    assert caught.sort("start_day")["direction"][0] == "drop"
    assert {"funnel_purchase", "conversion_rate"} & set(caught["metrics"][0])
    # Nothing else in five months of scored days but the drop's own echo (a week of grace).
    echo = pl.col("start_day").is_between(drop_start, drop_start + timedelta(days=13 + 7))
    assert incidents.filter(~during & ~echo).height <= 1, incidents


def _run_f1_check(scores: pl.DataFrame, tmp_path) -> list:
    from ubap_assets.defs.anomalies.checks import anomaly_detection_f1
    from ubap_assets.warehouse import tables as t

    @dg.asset(name=t.ANOMALY_SCORES)
    def scores_stand_in() -> pl.DataFrame:
        return scores

    result = dg.materialize(
        [scores_stand_in, anomaly_detection_f1],
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))},
    )
    assert result.success
    return result.get_asset_check_evaluations()


def test_the_quality_check_is_skipped_without_ground_truth_not_passed(tmp_path):
    assert _run_f1_check(pl.DataFrame(schema=anomalies.SCORES_SCHEMA), tmp_path) == []
    scored = pl.DataFrame(
        [("ensemble", "overall", 4, 4, 0, 1.0, 1.0, 1.0, 4, 0.0, 0.5, 60, "")],
        schema=anomalies.SCORES_SCHEMA,
        orient="row",
    )
    (evaluation,) = _run_f1_check(scored, tmp_path)
    assert evaluation.passed and evaluation.metadata["recall"].value == 1.0


def test_contributors_with_equal_shares_are_ranked_by_value_whatever_the_row_order():
    """On a small site several values often fall to zero together (equal shares); their ranks
    must not depend on the order the rows arrive in (the Spark and DuckDB engines differ)."""
    from datetime import date

    from ubap_assets.core.anomalies.incidents import _contributions

    rows = pl.DataFrame(
        {
            "day": [date(2026, 1, 5)] * 4,
            "dimension_value": ["d", "b", "a", "c"],
            "numerator": [0.0, 0.0, 0.0, 5.0],
            "denominator": [1.0, 1.0, 1.0, 1.0],
            "value": [0.0, 0.0, 0.0, 5.0],
            "expected": [2.0, 2.0, 2.0, 3.0],
        }
    ).with_columns(group=pl.lit(0), metric=pl.lit("sessions"), dimension=pl.lit("x"))
    ranks = [
        _contributions(rows.sample(fraction=1.0, shuffle=True, seed=seed))
        .select("dimension_value", "rank")
        .rows()
        for seed in range(6)
    ]
    assert ranks[0][:3] == [("a", 1), ("b", 2), ("d", 3)]
    assert all(r == ranks[0] for r in ranks)
