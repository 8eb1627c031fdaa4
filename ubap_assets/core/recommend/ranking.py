"""Row-wise ranking primitives shared by the scorers, the lists and the evaluation."""

from __future__ import annotations

import numpy as np

# Users scored at once: a dense (users, pages) float32 block stays a few MB per component.
BLOCK_SIZE = 4096


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first."""
    k = min(k, scores.shape[1])
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, candidates, axis=1), axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def minmax_rows(block: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1]; a constant row becomes zeros."""
    low = block.min(axis=1, keepdims=True)
    span = block.max(axis=1, keepdims=True) - low
    return np.divide(block - low, span, out=np.zeros_like(block), where=span > 0)
