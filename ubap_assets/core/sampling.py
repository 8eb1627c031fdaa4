"""Deterministic user samples: the same users for the same ids and seed on every run and machine.

A user's rank is a keyed BLAKE2 hash of their id; a sample of n keeps the n smallest ranks, so
samples are consistent across windows (a user kept in one window is kept wherever the ranks
allow) and grow by inclusion (a sample of n is inside the sample of n + 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def hash_ranks(user_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """One unsigned 64-bit rank per id: the keyed BLAKE2 hash of the id."""
    key = seed.to_bytes(8, "little", signed=True)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest(), "big")
            for u in user_ids
        ),
        dtype=np.uint64,
        count=len(user_ids),
    )


def sample_mask(user_ids: Sequence[str], max_users: int, seed: int = 0) -> np.ndarray:
    """A boolean mask over ``user_ids`` keeping the ``max_users`` smallest ranks (every id when
    there are at most ``max_users`` of them, or ``max_users`` is 0)."""
    keep = np.ones(len(user_ids), dtype=bool)
    if max_users <= 0 or len(user_ids) <= max_users:
        return keep
    keep[:] = False
    keep[np.argsort(hash_ranks(user_ids, seed), kind="stable")[:max_users]] = True
    return keep
