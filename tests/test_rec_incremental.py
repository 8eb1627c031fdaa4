"""The recommender's running interaction state: a night reads only the days after the state's
cut, and the weights are the same bits as reading the whole history, however the history was
split into nights, rebuilds and folds."""

from datetime import date, datetime, time, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ubap_assets.core import recommend
from ubap_assets.core.recommend import interaction_state as state
from ubap_assets.core.recommend.interactions import decay_period_days, load_training

FIRST = date(2026, 1, 5)
DAYS = 60
KEY = ["user_id", "page_id"]


def _daily(seed: int = 1, days: int = DAYS) -> pl.DataFrame:
    """A random user_page_daily: 40 users, 15 pages, every event type, uneven counts."""
    rng = np.random.default_rng(seed)
    n = 2500
    types = list(recommend.DEFAULT_EVENT_WEIGHTS) + ["unweighted_type"]
    frame = pl.DataFrame(
        {
            "day": [FIRST + timedelta(days=int(d)) for d in rng.integers(0, days, n)],
            "user_id": [f"u{u}" for u in rng.integers(0, 40, n)],
            "page_id": [f"p{p}" for p in rng.integers(0, 15, n)],
            "event_type": [types[t] for t in rng.integers(0, len(types), n)],
            "events": rng.geometric(0.3, n).astype(np.int64),
        }
    )
    return frame.group_by("day", "user_id", "page_id", "event_type").agg(pl.col("events").sum())


def _warehouse(frame: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("daily_in", frame)
    con.execute("CREATE TABLE user_page_daily AS SELECT * FROM daily_in")
    con.unregister("daily_in")
    return con


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0))


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(KEY)


@pytest.mark.parametrize("half_life", [None, 14.0, 0.25])
def test_nights_resumed_from_the_state_equal_the_whole_history_bit_for_bit(half_life):
    con = _warehouse(_daily())
    params = recommend.RecommenderParams(half_life_days=half_life)
    if half_life == 0.25:  # a short half-life spreads the history over several decay periods
        assert DAYS > 4 * decay_period_days(half_life)
    notes = []
    for night in range(30, DAYS + 1):  # each night's data end; the run rewrote its last 2 days
        end = _midnight(FIRST + timedelta(days=night))
        read = state.interactions_from_state(con, end, params, (end - timedelta(days=2)).date())
        notes.append(read)
        direct = recommend.load_interactions(con, None, end, params)
        assert_frame_equal(_sorted(read.frame), _sorted(direct), check_exact=True)
    assert notes[0].rebuilt == "no stored state"
    assert all(not read.rebuilt for read in notes[1:])
    # Folded once a week; a night reads RECENT_DAYS to RECENT_DAYS + 6 days after the cut.
    assert {read.folded_days for read in notes[1:]} == {0, state.FOLD_DAYS}
    assert {read.recent_days for read in notes} == set(
        range(state.RECENT_DAYS, state.RECENT_DAYS + state.FOLD_DAYS)
    )


def test_weights_match_the_decay_formula():
    frame = _daily(seed=2)
    con = _warehouse(frame)
    end = _midnight(FIRST + timedelta(days=DAYS))
    params = recommend.RecommenderParams(half_life_days=3.0)  # several decay periods
    weights = pl.DataFrame(
        {
            "event_type": list(params.event_weights),
            "w": list(params.event_weights.values()),
        }
    )
    expected = (
        frame.join(weights, on="event_type")
        .with_columns(age=(pl.lit(end.date()) - pl.col("day")).dt.total_days())
        .group_by(KEY)
        .agg(weight=(pl.col("events") * pl.col("w") * 0.5 ** (pl.col("age") / 3.0)).sum())
    )
    read = state.interactions_from_state(con, end, params, None)
    joined = expected.join(read.frame, on=KEY, suffix="_state")
    assert joined.height == expected.height == read.frame.height
    relative = ((joined["weight_state"] - joined["weight"]).abs() / joined["weight"]).max()
    assert relative < 1e-9


def test_a_rewritten_day_before_the_cut_rebuilds_the_state():
    con = _warehouse(_daily(seed=3))
    params = recommend.RecommenderParams(half_life_days=30.0)
    end = _midnight(FIRST + timedelta(days=DAYS))
    first = state.interactions_from_state(con, end, params, None)
    assert first.rebuilt and first.cut < end.date()
    recent = (end - timedelta(days=2)).date()
    assert not state.interactions_from_state(con, end, params, recent).rebuilt

    # The run says it rewrote a day before the cut (late data): rebuilt.
    early = first.cut - timedelta(days=10)
    assert "before the stored cut" in state.interactions_from_state(con, end, params, early).rebuilt

    # A day before the cut changed without the run saying so (a backfill without the
    # recommender): the stored rows and events no longer match, rebuilt, and still exact.
    con.execute(
        "UPDATE user_page_daily SET events = events + 5 WHERE day = ? AND event_type = 'purchase'",
        [early],
    )
    read = state.interactions_from_state(con, end, params, recent)
    assert "changed before the stored cut" in read.rebuilt
    direct = recommend.load_interactions(con, None, end, params)
    assert_frame_equal(_sorted(read.frame), _sorted(direct), check_exact=True)

    # Other knobs (the served half-life changed at a retraining): rebuilt.
    other = recommend.RecommenderParams(half_life_days=120.0)
    assert "other knobs" in state.interactions_from_state(con, end, other, recent).rebuilt
    # A run that does not name its days: rebuilt.
    assert state.interactions_from_state(con, end, other, None).rebuilt


def test_the_state_is_what_a_night_reads():
    """The resumed night takes the history before the cut from the state, not from the days:
    a (deliberately) altered stored sum shows in the weights."""
    con = _warehouse(_daily(seed=4))
    params = recommend.RecommenderParams()
    end = _midnight(FIRST + timedelta(days=DAYS))
    recent = (end - timedelta(days=2)).date()
    before = state.interactions_from_state(con, end, params, recent).frame
    con.execute(f"UPDATE {state.STATE_TABLE} SET mass = mass * 2 WHERE user_id = 'u1'")
    after = state.interactions_from_state(con, end, params, recent).frame
    changed = before.join(after, on=KEY, suffix="_after").filter(
        pl.col("weight") != pl.col("weight_after")
    )
    assert set(changed["user_id"]) == {"u1"}


def test_a_history_window_is_read_directly():
    con = _warehouse(_daily(seed=5))
    with pytest.raises(recommend.RecommendationError, match="read directly"):
        state.interactions_from_state(
            con,
            _midnight(FIRST + timedelta(days=DAYS)),
            recommend.RecommenderParams(history_days=30),
            None,
        )


def test_the_cut_is_a_week_start_at_least_recent_days_back():
    for offset in range(14):
        end = date(2026, 3, 2) + timedelta(days=offset)  # a Monday, then the days after it
        cut = state.state_cut(end)
        assert cut.weekday() == 0
        assert state.RECENT_DAYS <= (end - cut).days < state.RECENT_DAYS + state.FOLD_DAYS


def test_matrices_numbered_in_sql_equal_those_built_from_text_ids():
    from tests.test_recommend import _embeddings

    frame = _daily(seed=6)
    con = _warehouse(frame)
    pages = pl.DataFrame(
        {
            "page_id": [f"p{p}" for p in range(14)],  # p14 is outside the catalogue
            "url": [f"/p{p}" for p in range(14)],
            "title": [f"Page {p}" for p in range(14)],
            "description": ["text"] * 14,
            "category": ["c"] * 14,
            "page_type": ["product"] * 14,
        }
    )
    params = recommend.RecommenderParams(half_life_days=7.0)
    catalogue = recommend.build_catalogue(pages, _embeddings(pages), params)
    end = _midnight(FIRST + timedelta(days=DAYS))
    expected = recommend.build_interactions(
        recommend.load_interactions(con, None, end, params), catalogue, params.strength
    )
    from_sql = load_training(con, None, end, params, catalogue)
    from_state, note = state.training_from_state(con, end, params, None, catalogue)
    assert "rebuilt" in note
    for train in (from_sql, from_state):
        assert train.user_ids.tolist() == expected.user_ids.tolist()
        assert train.n_rows == expected.n_rows < frame.select(KEY).n_unique()
        for name in ("strength", "converted", "engaged"):
            got, want = getattr(train, name), getattr(expected, name)
            assert (got != want).nnz == 0 and got.dtype == np.float32
