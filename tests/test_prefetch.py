"""The prefetching iterator: the same items in order, errors where they happened, no runaway."""

import threading

import pytest

from ubap_assets.lib.prefetch import prefetched


def test_items_come_in_order_and_the_next_is_made_while_this_one_is_used():
    made = []
    next_made = threading.Event()

    def items():
        for i in range(5):
            made.append(i)
            if i == 1:
                next_made.set()
            yield i

    seen = []
    for item in prefetched(items()):
        if item == 0:
            # the consumer still holds item 0: the producer goes on to item 1 meanwhile
            assert next_made.wait(timeout=10)
        seen.append(item)
    assert seen == made == [0, 1, 2, 3, 4]


def test_a_producer_error_is_raised_where_its_item_would_have_come():
    def items():
        yield "a"
        yield "b"
        raise ValueError("day 3 could not be generated")

    seen = []
    with pytest.raises(ValueError, match="day 3"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == ["a", "b"]


def test_a_consumer_that_stops_early_stops_the_producer():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    stream = prefetched(items(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()  # what a failing or breaking loop does to the generator
    # at most the items in flight were made: the two taken, two queued, one being offered
    assert len(made) <= 5


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        list(prefetched([1], depth=0))
