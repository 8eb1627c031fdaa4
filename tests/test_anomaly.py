"""The noise models: counts, rates with their denominators, revenue and durations; bounded scores
and honest notes on bad input (zero denominators, empty days, one day of history)."""

from datetime import timedelta

import numpy as np
import polars as pl
import polars.testing
import pytest

from tests.anomaly_sites import START, site_days
from ubap_assets.core import anomalies
from ubap_assets.core.anomalies.noise import count_z, rate_z

SETTINGS = anomalies.DetectorSettings()


def run(daily: pl.DataFrame, settings=SETTINGS):
    series = anomalies.monitored_series(daily)
    history = anomalies.detect(series, settings)
    history, incidents, contributors = anomalies.build_incidents(history, series, settings)
    return series, history, incidents, contributors


def assert_clean(history: pl.DataFrame) -> None:
    """No NaN, null or infinity in a number; scores bounded; notes only where unscored."""
    for c, dtype in history.schema.items():
        if dtype == pl.Float64:
            assert history[c].null_count() == 0, c
            assert history[c].is_finite().all(), c
    assert history["score"].abs().max() <= anomalies.MAX_ABS_SCORE
    assert history.filter(pl.col("has_baseline") & pl.col("note").is_not_null()).height == 0
    assert history.filter(~pl.col("has_baseline") & pl.col("note").is_null()).height == 0


# --- the rate model: the denominator decides how strong the evidence is ----------------------


def test_zero_of_twenty_is_weak_evidence_zero_of_two_thousand_is_strong():
    weak, strong = rate_z(np.array([0, 0]), np.array([20, 2000]), np.full(2, 0.15), np.ones(2))
    assert -2.0 < weak < 0  # P(0 of 20 | 15%) = 3.9%
    assert strong <= -20
    assert abs(rate_z(np.array([300]), np.array([2000]), np.array([0.15]), np.ones(1))[0]) < 1


def test_over_dispersion_weakens_the_evidence_of_a_big_scope():
    plain = rate_z(np.array([240]), np.array([2000]), np.array([0.15]), np.array([1.0]))[0]
    dispersed = rate_z(np.array([240]), np.array([2000]), np.array([0.15]), np.array([4.0]))[0]
    assert plain < -3.5 and -2.5 < dispersed < 0


@pytest.mark.parametrize("sessions, flagged", [(20, False), (2000, True)])
def test_a_day_without_purchases_is_an_anomaly_only_with_enough_sessions(sessions, flagged):
    daily = site_days(42, sessions, 0.15, seed=2)
    last = daily.filter(pl.col("dimension") == "all")["day"].max()
    daily = daily.with_columns(
        pl.when(pl.col("day") == last)
        .then(0)
        .otherwise(pl.col("converted_sessions"))
        .alias("converted_sessions")
    )
    _, history, _, _ = run(daily)
    point = history.filter((pl.col("day") == last) & (pl.col("metric") == "conversion_rate"))
    assert point["has_baseline"][0]
    assert point["is_anomaly"][0] is flagged
    assert_clean(history)


def test_counts_are_poisson_at_least():
    assert count_z(np.array([130.0]), np.array([100.0]), np.array([100.0]))[0] > 2.5
    assert abs(count_z(np.array([130.0]), np.array([100.0]), np.array([900.0]))[0]) < 1.2
    assert count_z(np.array([0.0]), np.array([100.0]), np.array([100.0]))[0] < -10


def test_a_traffic_spike_and_drop_are_found_with_direction_and_a_bounded_score():
    daily = site_days(70, 3000, 0.05, seed=3)
    spike, drop = START + timedelta(days=50), START + timedelta(days=60)
    daily = daily.with_columns(
        pl.when(pl.col("day") == spike)
        .then(pl.col("sessions") * 1.8)
        .when(pl.col("day") == drop)
        .then(pl.col("sessions") * 0.4)
        .otherwise(pl.col("sessions"))
        .cast(pl.Int64)
        .alias("sessions")
    )
    _, history, _, _ = run(daily)
    sessions = history.filter(pl.col("metric") == "sessions").sort("day")
    flagged = sessions.filter(pl.col("is_anomaly"))
    assert set(flagged["day"].to_list()) == {spike, drop}
    assert flagged.sort("day")["direction"].to_list() == ["spike", "drop"]
    point = sessions.filter(pl.col("day") == spike).row(0, named=True)
    assert point["lower"] <= point["expected"] <= point["upper"] < point["value"]
    assert_clean(history)


def test_a_quiet_site_raises_no_incident():
    _, history, incidents, _ = run(site_days(120, 800, 0.08, seed=4))
    assert incidents.height == 0
    assert_clean(history)


def test_revenue_of_a_few_purchases_is_not_blown_up():
    """Revenue from a handful of purchases a day: wide intervals, no z of 1e10."""
    _, history, incidents, _ = run(site_days(90, 30, 0.05, seed=5))
    revenue = history.filter(pl.col("metric") == "revenue")
    assert revenue["score"].abs().max() < 6
    assert incidents.height == 0


# --- bad input: no NaN, no infinity, no crash, the real reason in a note ---------------------


def test_zero_denominators_and_days_without_events_have_notes_not_nan():
    daily = site_days(60, 400, 0.1, seed=6)
    empty = [START + timedelta(days=d) for d in (30, 31, 45)]
    zeroed = [
        "sessions",
        "active_users",
        "page_views",
        "events",
        "converted_sessions",
        "bounced_sessions",
        "revenue",
        "conversion_rate",
        "bounce_rate",
        "mean_session_duration_s",
    ]
    daily = daily.with_columns(
        [pl.when(pl.col("day").is_in(empty)).then(0).otherwise(pl.col(c)).alias(c) for c in zeroed]
    )
    series, history, _, _ = run(daily)
    assert_clean(history)
    rates = history.filter(pl.col("day").is_in(empty) & (pl.col("metric") == "conversion_rate"))
    assert set(rates["note"].to_list()) == {"no sessions that day"}
    assert not rates["has_baseline"].any()
    # A day with no sessions at all is a drop of the counts, and says so.
    sessions = history.filter((pl.col("day") == empty[-1]) & (pl.col("metric") == "sessions"))
    assert sessions["is_anomaly"][0] and sessions["direction"][0] == "drop"
    notes = anomalies.history_notes(series, history, SETTINGS)
    assert any("3 day(s) with no sessions" in n for n in notes)


def test_a_single_day_of_history_is_warm_up_and_says_so():
    daily = site_days(1, 100, 0.1)
    series, history, incidents, contributors = run(daily)
    assert history.height == len(anomalies.MONITORED) - 4  # no funnel input here
    assert not history["has_baseline"].any()
    assert set(history["note"].str.extract(r"^(warm-up)").to_list()) == {"warm-up"}
    assert_clean(history)
    assert incidents.height == 0 and contributors.height == 0
    notes = anomalies.history_notes(series, history, SETTINGS)
    assert "1 complete day(s) of history" in notes[0]
    assert not any("shorter than the detector window" in n for n in notes)
    sensitivity = anomalies.sensitivity(history, SETTINGS)
    assert sensitivity["incidents"].sum() == 0
    assert sensitivity.filter(pl.col("is_current"))["threshold"].to_list() == [4.0]


def test_no_input_gives_an_empty_history():
    empty = anomalies.detect(pl.DataFrame(schema=anomalies.SERIES_SCHEMA), SETTINGS)
    assert empty.height == 0 and empty.schema == pl.Schema(anomalies.HISTORY_SCHEMA)


def test_bad_settings_name_the_knob():
    problems = anomalies.DetectorSettings(threshold=0, min_history_points=40).problems()
    assert any("threshold" in p for p in problems)
    assert any("min_history_points" in p for p in problems)


def test_a_dimension_with_one_value_is_not_scored_twice():
    from datetime import date, timedelta

    from ubap_assets.core.anomalies import DetectorSettings, detect, history_notes, monitored_series

    counts = {"active_users": 10, "sessions": 20, "page_views": 40, "events": 60}
    counts |= {"converted_sessions": 2, "bounced_sessions": 5, "revenue": 30.0}
    rows = [
        {"day": date(2026, 1, 1) + timedelta(days=i), "dimension": dim, "dimension_value": value}
        | counts
        | {"mean_session_duration_s": 90.0, "is_complete": True}
        for i in range(10)
        for dim, value in (
            ("all", "all"),
            ("device", "unknown"),  # one value: the same series as all
            ("traffic_source", "ads"),
            ("traffic_source", "seo"),
        )
    ]
    series = monitored_series(pl.DataFrame(rows))
    assert set(series["dimension"].unique()) == {"all", "traffic_source"}
    notes = history_notes(series, detect(series, DetectorSettings()), DetectorSettings())
    assert any(n.startswith("device: not scored on its own") for n in notes)


# --- scoring resumes from the previous night's state: the same as scoring everything ---------

# tv and console: purchases so rare that their revenue's log scale is known late (console, about
# day 35) or never (tv) within the 70 days.
DEVICES = {"mobile": 0.55, "desktop": 0.35, "tablet": 0.10, "console": 0.012, "tv": 0.002}
SERIES_KEYS = ["dimension", "dimension_value", "metric"]


def _resumable_site() -> pl.DataFrame:
    """Devices, a conversion drop, a spike and days without sessions: every noise model, with
    warm-up, flags (winsorized state) and zero denominators."""
    daily = site_days(
        70,
        1500,
        0.05,
        seed=11,
        scopes=DEVICES,
        conversion_factor=lambda i, device: 0.5 if device == "mobile" and 40 <= i < 50 else 1.0,
    )
    empty = [START + timedelta(days=d) for d in (33, 58)]
    counts = ["sessions", "active_users", "page_views", "events", "converted_sessions"]
    counts += ["bounced_sessions", "revenue"]
    return daily.with_columns(
        [
            pl.when(pl.col("day").is_in(empty) & (pl.col("dimension_value") == "tablet"))
            .then(0)
            .otherwise(pl.col(c))
            .alias(c)
            for c in counts
        ]
    ).with_columns(
        pl.when(pl.col("day") == START + timedelta(days=61))
        .then(pl.col("sessions") * 2)
        .otherwise(pl.col("sessions"))
        .alias("sessions")
    )


def _through_duckdb(state: pl.DataFrame) -> pl.DataFrame:
    """The state as the asset keeps it: written to and read back from the warehouse."""
    import duckdb

    with duckdb.connect() as con:
        con.register("state_in", state)
        con.execute("CREATE TABLE anomaly_state AS SELECT * FROM state_in")
        return con.execute("SELECT * FROM anomaly_state").pl()


def _assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    from polars.testing import assert_frame_equal

    assert_frame_equal(a, b, check_exact=True)


def test_scoring_in_one_go_equals_scoring_a_prefix_then_appending_the_rest():
    daily = _resumable_site()
    whole = anomalies.detect_from(anomalies.monitored_series(daily), SETTINGS)
    assert whole.history["is_anomaly"].any() and (~whole.history["has_baseline"]).any()
    state = None
    for last in (30, 45, 46, 52, 69):  # console's log scale known in between; a night; a week
        series = anomalies.monitored_series(
            daily.filter(pl.col("day") <= START + timedelta(days=last))
        )
        night = anomalies.detect_from(series, SETTINGS, previous=state)
        state = _through_duckdb(night.state)
        if last == 46:  # only the new day was scored
            assert night.scored_cells == series.select(SERIES_KEYS).n_unique()
    _assert_same(night.history, whole.history)
    _assert_same(night.state, whole.state)


def test_a_changed_past_day_and_the_run_range_rescore_from_there():
    daily = _resumable_site()
    series = anomalies.monitored_series(daily)
    first = anomalies.detect_from(series, SETTINGS)
    # A past day of the tablet scope re-aggregated (late data): the tablet series rescore from
    # it, the others keep their rows; and the run's range start rescoring everything from there.
    changed = daily.with_columns(
        pl.when(
            (pl.col("day") == START + timedelta(days=30)) & (pl.col("dimension_value") == "tablet")
        )
        .then(pl.col("page_views") + 50)
        .otherwise(pl.col("page_views"))
        .alias("page_views")
    )
    new_series = anomalies.monitored_series(changed)
    whole = anomalies.detect_from(new_series, SETTINGS)
    late = anomalies.detect_from(new_series, SETTINGS, previous=_through_duckdb(first.state))
    assert late.scored_cells == 40  # one series (tablet page views), days 30..69
    _assert_same(late.history, whole.history)
    ranged = anomalies.detect_from(
        new_series,
        SETTINGS,
        previous=_through_duckdb(whole.state),
        recompute_from=START + timedelta(days=65),
    )
    assert ranged.scored_cells == 5 * new_series.select(SERIES_KEYS).n_unique()
    _assert_same(ranged.history, whole.history)


def test_other_settings_rescore_everything():
    series = anomalies.monitored_series(_resumable_site())
    first = anomalies.detect_from(series, SETTINGS)
    stricter = anomalies.DetectorSettings(threshold=5.0)
    again = anomalies.detect_from(series, stricter, previous=first.state)
    _assert_same(again.history, anomalies.detect_from(series, stricter).history)
    assert again.resumed_series == 0


def test_the_log_scale_is_fixed_by_the_first_days_so_later_days_never_rescore_the_past():
    daily = site_days(60, 400, 0.1, seed=6)
    short = anomalies.detect(
        anomalies.monitored_series(daily.filter(pl.col("day") < START + timedelta(days=40))),
        SETTINGS,
    )
    # Twenty much larger days later: with a scale from the whole series they would move it.
    grown = daily.with_columns(
        pl.when(pl.col("day") >= START + timedelta(days=40))
        .then(pl.col("revenue") * 20)
        .otherwise(pl.col("revenue"))
        .alias("revenue")
    )
    full = anomalies.detect(anomalies.monitored_series(grown), SETTINGS)
    _assert_same(full.filter(pl.col("day") < START + timedelta(days=40)), short)


def test_the_stored_state_takes_only_the_rescored_rows_and_equals_the_new_state():
    import duckdb

    from ubap_assets.defs.anomalies.assets import ANOMALY_STATE, _store_state

    daily = _resumable_site()
    day = START + timedelta(days=60)
    con = duckdb.connect()
    first = anomalies.detect_from(
        anomalies.monitored_series(daily.filter(pl.col("day") <= day)), SETTINGS
    )
    _store_state(con, first)
    # The next night: one more day, and the tv scope gone (its rows must go too).
    later = daily.filter(
        (pl.col("day") <= day + timedelta(days=1)) & (pl.col("dimension_value") != "tv")
    )
    stored = con.execute(f"SELECT * FROM {ANOMALY_STATE}").pl()
    night = anomalies.detect_from(
        anomalies.monitored_series(later), SETTINGS, previous=stored, recompute_from=day
    )
    assert night.resumed_from_previous and night.rescored.height < night.state.height
    _store_state(con, night)
    kept = con.execute(
        f"SELECT * FROM {ANOMALY_STATE} ORDER BY dimension, dimension_value, metric, day"
    ).pl()
    _assert_same(kept, night.state)


# --- incidents: contributors ranked by share, ties by change then value -----------------------

_DAY0 = START


def _hand_made_history() -> tuple[pl.DataFrame, pl.DataFrame]:
    """12 days of sessions (device: 4 values, traffic_source: 2) and conversion_rate (device: 2
    values); flagged overall: a drop on days 2-3 (sessions and conversion) and a rise on days
    8-9 (sessions; email has no rows then). Numbers chosen so every share is exact in binary."""
    usual = {
        ("device", "mobile"): 100.0,
        ("device", "desktop"): 60.0,
        ("device", "tablet"): 40.0,
        ("device", "console"): 10.0,
        ("traffic_source", "email"): 80.0,  # listed first: ranks must not follow row order
        ("traffic_source", "ads"): 120.0,
    }
    drop = {"mobile": 76.0, "desktop": 52.0, "tablet": 44.0, "ads": 104.0, "email": 64.0}
    rise = {"mobile": 96.0, "desktop": 76.0, "tablet": 56.0}
    history, series = [], []

    def add(i, dimension, value_of, metric, value, expected, score=0.0, n=1.0, k=None):
        day = _DAY0 + timedelta(days=i)
        history.append(
            {
                "day": day,
                "dimension": dimension,
                "dimension_value": value_of,
                "metric": metric,
                "value": value,
                "expected": expected,
                "level_score": 0.0,
                "score": score,
                "is_anomaly": score != 0.0,
                "has_baseline": True,
                "incident_id": None,
            }
        )
        key = {"day": day, "dimension": dimension, "dimension_value": value_of, "metric": metric}
        series.append(key | {"numerator": value if k is None else k, "denominator": n})

    for i in range(12):
        moved = drop if i in (2, 3) else rise if i in (8, 9) else {}
        for (dimension, value_of), expected in usual.items():
            if value_of == "email" and i in (8, 9):
                continue  # traffic_source then has one value: no contributors
            add(i, dimension, value_of, "sessions", moved.get(value_of, expected), expected)
        total = sum(moved.get(v, e) for (d, v), e in usual.items() if d == "device")
        score = -8.0 if moved is drop else 8.0 if moved is rise else 0.0
        add(i, "all", "all", "sessions", total, 210.0, score)
        # conversion: 64 sessions per device and day, 25% expected; mobile halves on the drop.
        mobile = 8.0 if moved is drop else 16.0
        for value_of, converted in (("mobile", mobile), ("desktop", 16.0)):
            add(i, "device", value_of, "conversion_rate", converted / 64, 0.25, n=64.0, k=converted)
        overall = (mobile + 16.0) / 128
        add(i, "all", "all", "conversion_rate", overall, 0.25, -5.0 * (moved is drop), 128.0)
    return pl.DataFrame(history), pl.DataFrame(series)


def test_contributors_are_ranked_by_share_then_change_then_value_in_each_incident():
    history, series = _hand_made_history()
    _, incidents, contributors = anomalies.build_incidents(history, series, SETTINGS)
    drop, rise = "2026-01-07-sessions-drop", "2026-01-13-sessions-spike"
    expected = pl.DataFrame(
        [
            # the rise: equal shares by value; of the zero shares, the move against the total first
            (rise, "sessions", "device", "desktop", 60.0, 76.0, 16.0, 0.5, 1),
            (rise, "sessions", "device", "tablet", 40.0, 56.0, 16.0, 0.5, 2),
            (rise, "sessions", "device", "mobile", 100.0, 96.0, -4.0, 0.0, 3),
            (rise, "sessions", "device", "console", 10.0, 10.0, 0.0, 0.0, 4),
            # the drop: a rate's change is in successes over the overall sessions (256)
            (drop, "conversion_rate", "device", "mobile", 0.25, 0.125, -0.0625, 1.0, 1),
            (drop, "conversion_rate", "device", "desktop", 0.25, 0.25, 0.0, 0.0, 2),
            (drop, "sessions", "device", "mobile", 100.0, 76.0, -24.0, 0.75, 1),
            (drop, "sessions", "device", "desktop", 60.0, 52.0, -8.0, 0.25, 2),
            (drop, "sessions", "device", "tablet", 40.0, 44.0, 4.0, 0.0, 3),
            (drop, "sessions", "device", "console", 10.0, 10.0, 0.0, 0.0, 4),
            (drop, "sessions", "traffic_source", "ads", 120.0, 104.0, -16.0, 0.5, 1),
            (drop, "sessions", "traffic_source", "email", 80.0, 64.0, -16.0, 0.5, 2),
        ],
        schema=anomalies.CONTRIBUTORS_SCHEMA,
        orient="row",
    )
    pl.testing.assert_frame_equal(contributors, expected, check_exact=True)
    assert incidents.select("incident_id", "top_contributor", "top_share").rows() == [
        (rise, "device=desktop", 0.5),
        (drop, "device=mobile", 0.75),
    ]
    assert incidents["description"].to_list() == [
        "Sessions rose 13% (238 vs 210 expected) from 13 Jan to 14 Jan; "
        "desktop accounts for 50% of the rise.",
        "Sessions fell 13% (182 vs 210 expected) from 7 Jan to 8 Jan; "
        "mobile accounts for 75% of the drop.",
    ]
    assert incidents["metrics"].to_list() == [["sessions"], ["conversion_rate", "sessions"]]
    # The same whatever order the rows arrive in.
    for seed in range(3):
        shuffled = anomalies.build_incidents(
            history.sample(fraction=1.0, shuffle=True, seed=seed), series, SETTINGS
        )
        pl.testing.assert_frame_equal(shuffled[1], incidents, check_exact=True)
        pl.testing.assert_frame_equal(shuffled[2], contributors, check_exact=True)
