"""Independent blocks of numpy work on a few threads.

numpy's and scipy's kernels (a sparse product, an argpartition, a sort) and the model libraries'
fits release the GIL, so on two cores two blocks of users are scored, or two tasks trained, at
once instead of in turn. Each block is computed exactly as in a loop and the results come back
in input order: the same values, sooner.

Before the first threads start, every allocation of MMAP_THRESHOLD or more gets its own mapping
for good (``mallopt``). glibc otherwise raises that threshold each time a large block is freed,
and after the threads' blocks the heap kept what later stages freed: a 10M-event run ended every
later stage 400-700 MB higher and peaked at 2.1-2.2 GB (1.7 GB with the fixed threshold).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Threads at most: each holds one block's working set (tens of MB) at a time.
MAX_WORKERS = 4

_inside = threading.local()


def block_workers() -> int:
    """Threads for a map of blocks: the CPUs this process may use, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def map_blocks(function: Callable[[T], R], blocks: Sequence[T]) -> list[R]:
    """``[function(b) for b in blocks]``, the blocks on up to ``block_workers()`` threads.

    A map inside a block (a scorer that splits its own rows) runs as a plain loop, so threads
    never multiply. The first block's exception is raised, as the loop would raise it.
    """
    workers = min(block_workers(), len(blocks))
    if workers < 2 or getattr(_inside, "active", False):
        return [function(block) for block in blocks]

    def run(block: T) -> R:
        _inside.active = True
        try:
            return function(block)
        finally:
            _inside.active = False

    fix_mmap_threshold()
    with ThreadPoolExecutor(workers, thread_name_prefix="ubap-blocks") as pool:
        return list(pool.map(run, blocks))


# glibc's mallopt parameter for the size from which an allocation gets its own mapping.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20


@functools.cache
def fix_mmap_threshold() -> bool:
    """Give every allocation of MMAP_THRESHOLD or more its own mapping, returned to the system
    when freed, from now on (once per process); False where the C library has no ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
