"""The text embedders: the bundled all-MiniLM-L6-v2 (loaded once) and the offline hashing one."""

import numpy as np
import pytest

from ubap_assets.lib.embedder import HashingEmbedder, SentenceEmbedder, embedder_from_env


@pytest.fixture(scope="module")
def minilm():
    embedder = SentenceEmbedder()
    embedder.embed(["warm up"])  # loads the model once for the module
    return embedder


def test_minilm_loads_offline_and_normalizes(minilm):
    vectors = minilm.embed(
        ["Noise cancelling headphones", "Wireless earbuds with ANC", "Burr coffee grinder", ""]
    )
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-4)
    assert not vectors[3].any(), "an empty text must give the zero vector"
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.1, "headphones should sit nearer earbuds than grinders"
    assert minilm.model_id() == "all-MiniLM-L6-v2"


def test_minilm_handles_no_texts_and_non_strings(minilm):
    assert minilm.embed([]).shape == (0, 384)
    vectors = minilm.embed([None, "   "])  # type: ignore[list-item]
    assert not vectors.any()


def test_hashing_embedder_is_deterministic_and_normalized():
    emb = HashingEmbedder(dim=64)
    a = emb.embed(["smart home hub", "smart home hub", "espresso machine", ""])
    assert a.shape == (4, 64)
    np.testing.assert_array_equal(a[0], a[1])
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, atol=1e-5)
    assert not a[3].any()
    assert a[0] @ a[2] < 0.99


def test_embedder_from_env(monkeypatch):
    monkeypatch.setenv("UBAP_EMBEDDER", "hashing")
    assert isinstance(embedder_from_env(), HashingEmbedder)
    monkeypatch.setenv("UBAP_EMBEDDER", "sentence")
    monkeypatch.setenv("UBAP_EMBEDDING_MODEL", "my/local-model")
    chosen = embedder_from_env()
    assert isinstance(chosen, SentenceEmbedder) and chosen.model_name == "my/local-model"
    monkeypatch.setenv("UBAP_EMBEDDER", "word2vec")
    with pytest.raises(ValueError, match="UBAP_EMBEDDER"):
        embedder_from_env()


def test_unknown_model_fails_with_a_clear_message(tmp_path):
    missing = SentenceEmbedder(model_name=str(tmp_path / "no-such-model"))
    with pytest.raises(RuntimeError, match="UBAP_EMBEDDING_MODEL"):
        missing.embed(["x"])
