"""The segment tables cover a trailing window (UBAP_SEGMENT_TREND_DAYS) under today's segments:
their days equal the whole-history computation's, and the detector's segment series slide with
the window without leaving rows behind."""

from datetime import timedelta

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.anomaly_sites import START, site_days
from tests.conftest import world_db
from ubap_assets.core import anomalies, trends
from ubap_assets.settings import Settings

WINDOW = 28


@pytest.fixture(scope="module")
def segmented_world(tiny_world) -> duckdb.DuckDBPyConnection:
    """The tiny world (42 days) with every user in one of three segments."""
    con = world_db(tiny_world)
    con.execute(
        "CREATE TABLE user_segments AS SELECT user_id, CAST(hash(user_id) % 3 AS INTEGER) AS "
        "segment_id, 'Segment ' || CAST(hash(user_id) % 3 AS VARCHAR) AS segment_name FROM users"
    )
    yield con
    con.close()


@pytest.mark.parametrize("table", [trends.segment_trends, trends.funnel_segments])
def test_segment_tables_cover_the_window_with_the_whole_historys_values(segmented_world, table):
    whole = table(segmented_world)
    windowed = table(segmented_world, days=WINDOW)
    last = whole["day"].max()
    first = last - timedelta(days=WINDOW - 1)
    assert whole["day"].min() < first  # the world is longer than the window
    assert windowed["day"].unique().sort().to_list() == [
        first + timedelta(days=i) for i in range(WINDOW)
    ]
    assert set(windowed["segment_id"]) == {"all", "0", "1", "2"}
    assert_frame_equal(windowed, whole.filter(pl.col("day") >= first), check_exact=True)
    # A window longer than the data covers all of it.
    assert_frame_equal(table(segmented_world, days=10_000), whole, check_exact=True)


def test_segment_trends_read_only_the_windows_user_days(segmented_world):
    """The window's metrics come from its user-days only (a day before it changed alters
    nothing but who is new); the plan filters user_daily on day."""
    con = segmented_world
    before = trends.segment_trends(con, days=WINDOW)
    first = before["day"].min()
    con.execute("CREATE TABLE user_daily_copy AS SELECT * FROM user_daily")
    try:
        con.execute("UPDATE user_daily SET events = events + 1000 WHERE day < ?", [first])
        after = trends.segment_trends(con, days=WINDOW)
        assert_frame_equal(after, before, check_exact=True)
        assert trends.segment_trends(con)["events"].sum() > before["events"].sum() + 1000
    finally:
        con.execute("CREATE OR REPLACE TABLE user_daily AS SELECT * FROM user_daily_copy")
        con.execute("DROP TABLE user_daily_copy")


def test_a_bad_window_is_refused_with_the_fix(segmented_world):
    with pytest.raises(ValueError, match="at least 1"):
        trends.segment_trends(segmented_world, days=0)
    with pytest.raises(ValueError, match="at least 1"):
        trends.funnel_segments(segmented_world, days=-3)


def test_the_setting_defaults_to_90_days_and_names_the_fix():
    assert Settings.from_environ({}).segment_trend_days == 90
    assert Settings.from_environ({"UBAP_SEGMENT_TREND_DAYS": "28"}).segment_trend_days == 28
    env = {"UBAP_SEGMENT_TREND_DAYS": "7"}
    with pytest.raises(ValueError, match="greater than or equal to 28"):
        Settings.from_environ(env, ("segment_trend_days",))


def test_a_too_short_window_setting_falls_back_with_a_problem(monkeypatch):
    from ubap_assets.settings import load_settings

    monkeypatch.setenv("UBAP_SEGMENT_TREND_DAYS", "7")
    settings, problems = load_settings()
    assert settings.segment_trend_days == 90
    (problem,) = problems
    assert problem.startswith("UBAP_SEGMENT_TREND_DAYS='7' is invalid")
    assert "at least 28" in problem


# --- the detector: segment series over a window that moves one day a night -----------------

DAYS, SEGMENT_DAYS = 70, 30


def _site() -> tuple[pl.DataFrame, pl.DataFrame]:
    """daily_trends 'all' rows over DAYS days and segment_trends rows of two segments."""
    daily = site_days(DAYS, 1500, 0.05, seed=5, scopes={"0": 0.6, "1": 0.4})
    overall = daily.filter(pl.col("dimension") == "all")
    segments = daily.filter(pl.col("dimension") == "device").select(
        pl.exclude("dimension", "dimension_value"),
        pl.col("dimension_value").alias("segment_id"),
        ("Segment " + pl.col("dimension_value")).alias("segment_name"),
    )
    return overall, segments


def _series(overall: pl.DataFrame, segments: pl.DataFrame, last: int) -> pl.DataFrame:
    """The monitored series of the night whose data ends on day ``last``: segment rows of its
    trailing SEGMENT_DAYS days only (as segment_trends gives them)."""
    end = START + timedelta(days=last)
    window = segments.filter(pl.col("day").is_between(end - timedelta(days=SEGMENT_DAYS - 1), end))
    return anomalies.monitored_series(overall.filter(pl.col("day") <= end), window)


def test_segment_series_sliding_with_the_window_equal_scoring_the_last_night_alone():
    overall, segments = _site()
    settings = anomalies.DetectorSettings()
    state = None
    for last in range(55, DAYS):  # fifteen nights: the window moves a day each
        series = _series(overall, segments, last)
        night = anomalies.detect_from(series, settings, previous=state)
        state = night.state
    whole = anomalies.detect_from(series, settings)
    assert_frame_equal(night.history, whole.history, check_exact=True)
    assert_frame_equal(night.state, whole.state, check_exact=True)
    segment = night.history.filter(pl.col("dimension") == "segment")
    first = START + timedelta(days=DAYS - SEGMENT_DAYS)
    assert segment["day"].min() == first  # nothing left from the windows before
    assert segment.height == 2 * segment["metric"].n_unique() * SEGMENT_DAYS
    assert segment.filter(pl.col("day") == first)["note"].str.starts_with("warm-up").all()
    # The all-users series resumed (only the new day); the segment series were scored again.
    overall_series = series.filter(pl.col("dimension") == "all").select(
        "dimension", "dimension_value", "metric"
    )
    expected = overall_series.n_unique() + segment.height
    assert night.scored_cells == expected
    notes = anomalies.history_notes(series, night.history, settings)
    assert any(n.startswith(f"segment series cover {first}") for n in notes), notes
