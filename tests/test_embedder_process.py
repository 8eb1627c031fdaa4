"""SentenceEmbedder's child process: the same vectors as in-process, torch never in the parent,
clear errors from the child (a bad model, a killed worker), no child when there is nothing to do,
and a first run's child started ahead (loading the model while the first steps run)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest

from ubap_assets.core import recommend
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.lib import embedding_worker
from ubap_assets.lib.embedder import SentenceEmbedder, WorkerJob, worker_launches

ROOT = Path(__file__).resolve().parents[1]


def _page_texts(n: int) -> list[str]:
    return recommend.page_texts(page_catalogue().head(n))["text"].to_list()


def test_worker_vectors_equal_in_process_vectors():
    texts = [*_page_texts(40), "", "Noise cancelling headphones"]
    launches = worker_launches()
    from_child = SentenceEmbedder().embed(texts)
    assert worker_launches() == launches + 1, "one child for one call"
    in_process = SentenceEmbedder(in_subprocess=False).embed(texts)
    assert from_child.dtype == np.float32 and from_child.shape == (42, 384)
    np.testing.assert_allclose(from_child, in_process, atol=1e-6)
    assert not from_child[40].any() and np.linalg.norm(from_child[41]) == pytest.approx(1, abs=1e-4)
    # the size read from the bundled model's files is the one the model reports
    assert embedding_worker.dimension_from_files("") == from_child.shape[1]


def test_the_parent_never_imports_torch():
    script = (
        "import json, sys\n"
        "from ubap_assets.lib.embedder import SentenceEmbedder\n"
        "embedder = SentenceEmbedder()\n"
        "vectors = embedder.embed(['Burr coffee grinder', 'Wireless earbuds'])\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('torch', 'sentence_transformers', 'transformers'))\n"
        "print(json.dumps({'shape': vectors.shape, 'dim': embedder.dimension(),\n"
        "                  'norm': float(abs(vectors).sum()), 'heavy': heavy[:5]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["shape"] == [2, 384] and seen["dim"] == 384 and seen["norm"] > 0
    assert seen["heavy"] == [], f"the model's packages were imported in the parent: {seen}"


def test_a_bad_model_gives_the_same_clear_error_as_in_process(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(RuntimeError, match="UBAP_EMBEDDING_MODEL") as from_child:
        SentenceEmbedder(model_name=missing).embed(["x"])
    with pytest.raises(RuntimeError) as in_process:
        SentenceEmbedder(model_name=missing, in_subprocess=False).embed(["x"])
    assert str(from_child.value) == str(in_process.value)
    assert f"could not load embedding model {missing!r}" in str(from_child.value)
    # a model whose size its files cannot tell is asked in a child, and fails just as clearly
    launches = worker_launches()
    with pytest.raises(RuntimeError, match="UBAP_EMBEDDING_MODEL"):
        SentenceEmbedder(model_name=missing).dimension()
    assert worker_launches() == launches + 1


def test_nothing_to_encode_starts_no_child():
    embedder = SentenceEmbedder()
    launches = worker_launches()
    assert embedder.embed([]).shape == (0, 384)
    assert not embedder.embed(["", None, "   "]).any()  # type: ignore[list-item]
    assert embedder.dimension() == 384
    # a nightly run where no page changed: every vector reused, no child
    texts = recommend.page_texts(page_catalogue().head(20))
    stored = recommend.embeddings_frame(
        texts, np.ones((20, 384), dtype=np.float32), "all-MiniLM-L6-v2"
    )
    refresh = recommend.refresh_embeddings(texts, stored, embedder.model_id(), embedder.embed)
    assert (refresh.embedded_pages, refresh.reused_pages) == (0, 20)
    assert worker_launches() == launches, "a child was started with nothing to encode"


def _worker_of(parent: psutil.Process) -> psutil.Process | None:
    for child in parent.children(recursive=True):
        try:
            if any("embedding_worker" in part for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_killed_worker_is_named_as_such():
    failure: list[BaseException] = []

    def embed_many():
        try:
            SentenceEmbedder().embed(["a page about headphones"] * 5000)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    embedding = threading.Thread(target=embed_many)
    embedding.start()
    worker, deadline = None, time.monotonic() + 30
    while worker is None and time.monotonic() < deadline:
        worker = _worker_of(psutil.Process())
        time.sleep(0.02)
    assert worker is not None, "no embedding worker appeared"
    worker.send_signal(signal.SIGKILL)  # what the out-of-memory killer sends
    embedding.join(timeout=60)
    assert not embedding.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], RuntimeError), failure
    message = str(failure[0])
    assert "killed by SIGKILL" in message and "out-of-memory" in message, message
    assert "5000 texts" in message and "all-MiniLM-L6-v2" in message


def test_a_first_run_starts_the_model_ahead_and_a_later_run_starts_none(tmp_path):
    import dagster as dg
    import duckdb
    from dagster_duckdb import DuckDBResource

    from ubap_assets.defs.recommendations import assets
    from ubap_assets.lib.warehouse_io import DuckDBWarehouseIOManager

    path = str(tmp_path / "w.duckdb")
    launches_when_pages_ran = []

    @dg.asset(name="pages")
    def pages() -> pl.DataFrame:  # the run's first step: a child started ahead exists by now
        launches_when_pages_ran.append(worker_launches())
        return page_catalogue().head(12)

    instance = dg.DagsterInstance.ephemeral()

    def run() -> dict:
        result = dg.materialize(
            [assets.page_embeddings, pages],
            instance=instance,
            resources={
                "io_manager": DuckDBWarehouseIOManager(database=path),
                "warehouse": DuckDBResource(database=path),
                "embedder": SentenceEmbedder(warm_start_for="page_embeddings"),
            },
        )
        assert result.success
        [materialization] = result.asset_materializations_for_node("page_embeddings")
        return {key: value.value for key, value in materialization.metadata.items()}

    launches = worker_launches()
    first = run()
    assert (first["embedded_pages"], first["dim"]) == (12, 384)
    assert launches_when_pages_ran == [launches + 1], "the model did not start ahead of the run"
    assert worker_launches() == launches + 1, "the child started ahead was not the one used"
    with duckdb.connect(path, read_only=True) as con:
        stored = np.stack(con.execute("SELECT embedding FROM page_embeddings").pl()["embedding"])
    texts = recommend.page_texts(page_catalogue().head(12))["text"].to_list()
    assert np.allclose(stored, SentenceEmbedder(in_subprocess=False).embed(texts), atol=1e-5)
    second = run()  # the nightly case: embedded before with this model, no page changed
    assert (second["embedded_pages"], second["reused_pages"]) == (0, 12)
    assert worker_launches() == launches + 1, "a child was started though no page changed"


def test_a_child_started_ahead_and_never_asked_is_stopped_and_cleaned_up():
    job = WorkerJob("all-MiniLM-L6-v2", "cpu", 64, texts=None)
    time.sleep(0.5)
    assert job.process.poll() is None, "it should be loading the model, then wait for texts"
    job.close()  # the run needed no embedding: stopped, not waited for
    # SIGTERM, or (when the signal is still pending while the child reads files from disk) the
    # end of its input, which it answers with a clean exit: either way it is gone.
    assert job.process.returncode in (-signal.SIGTERM, 0)
    assert not job.folder.exists()


def test_the_worker_exits_when_its_parent_dies():
    script = (
        "from ubap_assets.lib.embedder import SentenceEmbedder\n"
        "SentenceEmbedder().embed(['a long page about quiet headphones ' * 20] * 30000)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        worker, deadline = None, time.monotonic() + 60
        while worker is None and time.monotonic() < deadline and parent.poll() is None:
            worker = _worker_of(psutil.Process(parent.pid))
            time.sleep(0.05)
        assert worker is not None, "no embedding worker appeared"
        scratch = Path(worker.cmdline()[-1])
        time.sleep(1)  # let it start on the request
    finally:
        parent.kill()
        parent.wait()
    _, alive = psutil.wait_procs([worker], timeout=5)  # it checks on its parent every second
    still_working = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for orphan in still_working:
        orphan.kill()
    assert not still_working, "the worker kept encoding after its parent was killed"
    assert not scratch.exists(), "the orphaned worker left its scratch folder behind"
