"""The day partitions a run covers, read from its tags (one day, or a range of them).

Unpartitioned assets of a partitioned run (the anomaly history, the weekly trends, the planted
ground truth) resume from the run's first day; jobs, schedules and sensors write the same tags.
"""

from collections.abc import Mapping
from datetime import date, timedelta

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def first_day_of_run(tags: Mapping[str, str]) -> date | None:
    """The first day partition the run materializes, or None outside a partitioned run."""
    first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    return date.fromisoformat(first) if first else None


def days_of_run(tags: Mapping[str, str]) -> list[date]:
    """Every day partition the run materializes (none outside a partitioned run)."""
    start = first_day_of_run(tags)
    last = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if start is None or not last:
        return []
    end = date.fromisoformat(last)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
