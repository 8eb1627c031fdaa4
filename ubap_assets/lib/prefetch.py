"""Producing the next item of an iterator while the caller consumes this one.

A day of synthetic events is built in numpy and polars while the engine writes the day before:
both release the GIL for most of their work, so on two cores the two overlap instead of taking
turns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced by a background thread at most ``depth`` items ahead.

    The producer's exception is raised in the consumer where that item would have come. When
    the consumer stops early (an error, a ``break``) the producer stops at its next item.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1 (got {depth})")
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))
            return
        offer(_DONE)

    worker = threading.Thread(target=produce, name="ubap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
