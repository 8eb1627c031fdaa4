"""Blocks of numpy work on a few threads: the results of a loop, in order, sooner; and the
recommender's threaded scorers and the models' bootstrap equal their one-thread results bit for
bit."""

import threading

import numpy as np
import polars as pl
import pytest

from tests.conftest import world_db
from tests.test_recommend import _embeddings
from ubap_assets.core import model_evaluation as ev
from ubap_assets.core import recommend
from ubap_assets.core.recommend import render, scorers
from ubap_assets.lib import blocks
from ubap_assets.lib.blocks import map_blocks


@pytest.fixture
def four_workers(monkeypatch):
    monkeypatch.setattr(blocks, "block_workers", lambda: 4)


def test_blocks_run_at_once_and_come_back_in_order(four_workers):
    together = threading.Barrier(2, timeout=10)  # breaks unless two blocks are in flight at once

    def work(i: int) -> int:
        if i < 2:
            together.wait()
        return i * i

    assert map_blocks(work, list(range(9))) == [i * i for i in range(9)]


def test_a_map_inside_a_block_is_a_plain_loop(four_workers):
    def inner(outer: int) -> set[int]:
        return set(map_blocks(lambda _: threading.get_ident(), range(5)))

    threads = map_blocks(lambda i: (threading.get_ident(), inner(i)), list(range(4)))
    assert all(inner_threads == {outer} for outer, inner_threads in threads)


def test_a_threaded_map_fixes_the_mmap_threshold_before_its_threads_start(
    four_workers, monkeypatch
):
    calls = []
    monkeypatch.setattr(blocks, "fix_mmap_threshold", lambda: calls.append("fixed"))
    map_blocks(lambda i: calls.append(i), [0, 1, 2])
    assert calls[0] == "fixed" and sorted(calls[1:]) == [0, 1, 2]
    calls.clear()
    map_blocks(lambda i: calls.append(i), [0])  # one block: a plain loop, no threads
    assert calls == [0]


def test_a_failing_block_raises_its_error(four_workers):
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("block 3 is bad")
        return i

    with pytest.raises(ValueError, match="block 3 is bad"):
        map_blocks(work, list(range(8)))


def test_threaded_user_knn_and_lists_equal_one_thread(tiny_world, monkeypatch):
    con = world_db(tiny_world)
    params = recommend.RecommenderParams(collaborative="user_knn", user_pool=300)
    end = recommend.data_end(con)
    catalogue = recommend.build_catalogue(tiny_world.pages, _embeddings(tiny_world.pages), params)
    train = recommend.build_interactions(
        recommend.load_interactions(con, None, end, params), catalogue
    )
    model = recommend.fit(catalogue, train, params)
    # Small blocks, so 800 users make many of each.
    monkeypatch.setattr(scorers, "USER_KNN_ROWS", 16)
    monkeypatch.setattr(render, "BLOCK_SIZE", 100)
    users = tiny_world.users["user_id"].to_numpy()
    rows = train.strength
    own = np.arange(train.n_users)

    def run() -> tuple[np.ndarray, pl.DataFrame]:
        return model.user_knn(rows, own), render.recommendation_lists(model, users, end)

    monkeypatch.setattr(blocks, "block_workers", lambda: 1)
    one_knn, one_lists = run()
    monkeypatch.setattr(blocks, "block_workers", lambda: 4)
    many_knn, many_lists = run()
    assert train.n_users > 16 * 4 and len(users) > 100 * 4
    assert np.array_equal(one_knn, many_knn)
    assert one_lists.equals(many_lists)
    assert (one_lists["top_signal"] == "collaborative").any()


def test_bootstrap_intervals_are_the_same_on_one_thread_and_on_four(monkeypatch):
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.2).astype(int)
    p = np.clip(0.3 * y + 0.7 * rng.random(5000), 0, 1)
    monkeypatch.setattr(blocks, "block_workers", lambda: 1)
    one = ev.bootstrap_intervals(y, p, 0.5, seed=3)
    monkeypatch.setattr(blocks, "block_workers", lambda: 4)
    assert ev.bootstrap_intervals(y, p, 0.5, seed=3) == one
    # every resample is drawn: 1000 of them over the blocks, none repeated by a shared stream
    cells = ev.Cells.of(y, p, 0.5)
    resampled = cells.resampled_metrics(1000, seed=3)["roc_auc"]
    assert len(resampled) == 1000 and len(np.unique(resampled)) > 900
