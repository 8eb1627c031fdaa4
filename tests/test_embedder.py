"""The text embedders: the bundled all-MiniLM-L6-v2 and the offline hashing one.
(tests/test_embedder_process.py covers the child process the sentence embedder encodes in.)"""

import numpy as np
import polars as pl
import pytest

from ubap_assets.core import recommend
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.lib.embedder import HashingEmbedder, SentenceEmbedder, embedder_from_env


@pytest.fixture(scope="module")
def minilm():
    """In-process, so the model loads once for the module rather than in a child per call."""
    embedder = SentenceEmbedder(in_subprocess=False)
    embedder.embed(["warm up"])
    return embedder


def test_minilm_loads_offline_and_normalizes():
    vectors = SentenceEmbedder().embed(
        ["Noise cancelling headphones", "Wireless earbuds with ANC", "Burr coffee grinder", ""]
    )
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-4)
    assert not vectors[3].any(), "an empty text must give the zero vector"
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.1, "headphones should sit nearer earbuds than grinders"
    assert SentenceEmbedder().model_id() == "all-MiniLM-L6-v2"


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


class RecordingEmbed:
    """The embedder's ``embed``, recording which texts it was asked for."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.asked: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.asked.extend(texts)
        return self.embedder.embed(texts)


def _never(texts: list[str]) -> np.ndarray:
    raise AssertionError(f"nothing changed, yet {len(texts)} texts were sent to the model")


def test_refresh_embeds_only_changed_pages_and_equals_embedding_all(minilm):
    pages = page_catalogue().head(60)
    model = minilm.model_id()
    first = recommend.refresh_embeddings(recommend.page_texts(pages), None, model, minilm.embed)
    assert (first.embedded_pages, first.reused_pages) == (60, 0)

    # nothing changed: every vector reused, the model never asked
    same = recommend.refresh_embeddings(recommend.page_texts(pages), first.frame, model, _never)
    assert (same.embedded_pages, same.reused_pages) == (0, 60)
    assert same.frame.equals(first.frame)

    # two titles edited, one page gone, one page new
    edited = pages.with_columns(
        title=pl.when(pl.col("page_id").is_in(pages["page_id"][[3, 7]].to_list()))
        .then(pl.col("title") + " (new edition)")
        .otherwise(pl.col("title"))
    )
    newcomer = pages.head(1).with_columns(
        page_id=pl.lit("p-new"), title=pl.lit("Espresso tamper"), description=pl.lit("Steel")
    )
    changed = pl.concat([edited.slice(1), newcomer])
    texts = recommend.page_texts(changed)
    recorder = RecordingEmbed(minilm)
    refreshed = recommend.refresh_embeddings(texts, first.frame, model, recorder)
    assert (refreshed.embedded_pages, refreshed.reused_pages) == (3, 57)
    expected_asked = texts.filter(
        pl.col("page_id").is_in([pages["page_id"][3], pages["page_id"][7], "p-new"])
    )["text"]
    assert sorted(recorder.asked) == sorted(expected_asked.to_list())

    # the same frame as embedding every page from scratch
    everything = recommend.refresh_embeddings(texts, None, model, minilm.embed).frame
    assert refreshed.frame.drop("embedding").equals(everything.drop("embedding"))
    np.testing.assert_allclose(
        recommend.embedding_matrix(refreshed.frame, texts["page_id"].to_numpy()),
        recommend.embedding_matrix(everything, texts["page_id"].to_numpy()),
        atol=1e-6,
    )
    # a reused vector is the stored one, bit for bit
    kept = pages["page_id"][10]
    stored = first.frame.filter(pl.col("page_id") == kept)["embedding"].to_list()
    assert refreshed.frame.filter(pl.col("page_id") == kept)["embedding"].to_list() == stored


def test_refresh_under_another_model_embeds_every_page(minilm):
    pages = page_catalogue().head(5)
    texts = recommend.page_texts(pages)
    stored = recommend.refresh_embeddings(texts, None, "hashing-256", HashingEmbedder().embed)
    refreshed = recommend.refresh_embeddings(texts, stored.frame, minilm.model_id(), minilm.embed)
    assert (refreshed.embedded_pages, refreshed.reused_pages) == (5, 0)
    assert set(refreshed.frame["dim"]) == {384}
    assert set(refreshed.frame["model"]) == {"all-MiniLM-L6-v2"}
