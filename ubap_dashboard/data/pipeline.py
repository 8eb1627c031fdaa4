"""The Pipeline page's reads: rejected input rows, row counts and how fresh the snapshot is."""

import math
from datetime import UTC, datetime

import polars as pl

from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading


@cached
def rejects(snap: Snapshot, limit: int = 1000) -> tuple[pl.DataFrame, int]:
    """The first ``limit`` rejected input rows and how many there are in all."""
    with reading(snap) as reader:
        return reader.rejects(limit)


@cached
def row_counts(snap: Snapshot, names: tuple[str, ...]) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.row_counts(names)


def freshness(materialized_at: datetime | None, now: datetime | None = None) -> str:
    """How long ago the snapshot was published, in words (``now`` is naive UTC)."""
    if materialized_at is None:
        return "unknown"
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = max((now - materialized_at).total_seconds(), 0.0)
    if seconds < 90:
        return "just now"
    minutes = seconds / 60
    if minutes < 90:
        return f"{math.floor(minutes)} minutes ago"
    hours = minutes / 60
    if hours < 36:
        return f"{hours:.1f} hours ago"
    return f"{hours / 24:.0f} days ago"
