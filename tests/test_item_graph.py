"""The served model's item graph: fitted on the interactions before the running state's cut,
kept on disk under a key of what it is made of, and the same bits whether fitted or read back."""

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from tests.test_rec_incremental import DAYS, FIRST, _daily, _midnight, _warehouse
from tests.test_recommend import _embeddings
from ubap_assets.core import recommend
from ubap_assets.core.recommend import interaction_state as state
from ubap_assets.core.recommend import item_graph
from ubap_assets.core.recommend.interactions import load_training
from ubap_assets.core.recommend.scorers import ItemGraph, fit, fit_item_graph

PAGES = pl.DataFrame(
    {
        "page_id": [f"p{p}" for p in range(15)],
        "url": [f"/p{p}" for p in range(15)],
        "title": [f"Page {p}" for p in range(15)],
        "description": [f"text {p % 4}" for p in range(15)],
        "category": ["c"] * 15,
        "page_type": ["product"] * 15,
    }
)


@pytest.fixture
def night():
    """A warehouse whose running state was brought to the cut of its data end."""
    con = _warehouse(_daily(seed=3))
    params = recommend.RecommenderParams(half_life_days=14.0)
    catalogue = recommend.build_catalogue(PAGES, _embeddings(PAGES), params)
    end = _midnight(FIRST + timedelta(days=DAYS))
    train, _ = state.training_from_state(con, end, params, None, catalogue)
    yield con, params, catalogue, train
    con.close()


def _same(a: ItemGraph, b: ItemGraph) -> bool:
    return all(
        np.array_equal(getattr(a, name), getattr(b, name))
        and getattr(a, name).dtype == getattr(b, name).dtype
        for name in ItemGraph.ARRAYS
    )


def test_the_graph_is_fitted_on_the_days_before_the_cut(night):
    con, params, catalogue, train = night
    cut = state.stored_state(con)["cut"]
    at_cut = state.training_at_cut(con, params, catalogue, state.stored_state(con))
    whole = load_training(con, None, _midnight(cut), params, catalogue)
    assert at_cut.user_ids.tolist() == whole.user_ids.tolist()
    assert (at_cut.strength != whole.strength).nnz == 0 and at_cut.n_rows < train.n_rows

    graph, note = item_graph.served_item_graph(con, catalogue, params, None)
    assert f"before the cut {cut}" in note
    assert _same(graph, fit_item_graph(catalogue, whole, params))
    # the users' side still reads every day to the data end
    model = fit(catalogue, train, params, graph=graph)
    assert model.train is train and np.array_equal(model.ease_weights, graph.ease_weights)
    assert np.array_equal(model.popularity, np.asarray(train.strength.sum(axis=0)).ravel())


def test_a_kept_graph_is_read_back_and_anything_it_is_made_of_misses_it(night, tmp_path):
    con, params, catalogue, _ = night
    fitted, note = item_graph.served_item_graph(con, catalogue, params, tmp_path)
    assert "fitted on" in note and len(list(tmp_path.glob("*.npz"))) == 1
    kept, note = item_graph.served_item_graph(con, catalogue, params, tmp_path)
    assert "kept since" in note and _same(kept, fitted)

    other = recommend.RecommenderParams(half_life_days=14.0, ease_lambda=params.ease_lambda * 2)
    refitted, note = item_graph.served_item_graph(con, catalogue, other, tmp_path)
    assert "fitted on" in note and not np.array_equal(refitted.ease_weights, fitted.ease_weights)
    assert len(list(tmp_path.glob("*.npz"))) == 1  # only the latest graph is kept

    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"torn")  # a crash mid-write leaves no such file, but a disk might
    again, note = item_graph.served_item_graph(con, catalogue, other, tmp_path)
    assert "fitted on" in note and _same(again, refitted)


def test_no_graph_before_the_state_holds_a_day_or_for_a_window():
    con = _warehouse(_daily(seed=3, days=2))
    params = recommend.RecommenderParams()
    catalogue = recommend.build_catalogue(PAGES, _embeddings(PAGES), params)
    state.training_from_state(con, _midnight(FIRST + timedelta(days=2)), params, None, catalogue)
    assert item_graph.served_item_graph(con, catalogue, params, None)[0] is None
    windowed = recommend.RecommenderParams(history_days=30)
    graph, note = item_graph.served_item_graph(con, catalogue, windowed, None)
    assert graph is None and "served window" in note


def test_a_day_rewritten_before_the_cut_misses_the_kept_graph_even_with_the_same_counts(
    night, tmp_path
):
    con, params, catalogue, _ = night
    fitted, _ = item_graph.served_item_graph(con, catalogue, params, tmp_path)
    digest = state.stored_state(con)["digest"]
    # late data for the first day: p1 and p2 swapped, so the same rows and events as before
    con.execute(
        "UPDATE user_page_daily SET page_id = CASE page_id WHEN 'p1' THEN 'p2' ELSE 'p1' END "
        "WHERE day = ? AND page_id IN ('p1', 'p2')",
        [FIRST],
    )
    end = _midnight(FIRST + timedelta(days=DAYS))
    _, note = state.training_from_state(con, end, params, FIRST, catalogue)
    assert "rebuilt" in note and state.stored_state(con)["digest"] == digest
    refitted, note = item_graph.served_item_graph(con, catalogue, params, tmp_path)
    assert "fitted on" in note and not _same(refitted, fitted)
