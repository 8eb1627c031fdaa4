"""One partition per day of events, over the pinned world's days (see ``world.py``).

The first day never slides. The synthetic world has an open end (a new partition each day);
a historic log ends at its last day. A bad setting does not break the code location: the
partitions fall back to the default world, the problem is logged as one line naming the variable
and the fix, and every events run fails with the same message (``LOAD_PROBLEMS``).
"""

from datetime import timedelta

import dagster as dg

from ubap_assets.defs.events.world import Resolved, World, current_world


def partitions_for(world: World) -> dg.DailyPartitionsDefinition:
    end = (world.last_day + timedelta(days=1)).isoformat() if world.last_day else None
    return dg.DailyPartitionsDefinition(start_date=world.first_day.isoformat(), end_date=end)


def build_partitions() -> tuple[dg.DailyPartitionsDefinition, Resolved]:
    """The partitions of the world as the environment and world.json say now (recording the
    world the first time), and the world with its problems, each logged as one error line."""
    resolved = current_world(record=True)
    logger = dg.get_dagster_logger()
    for problem in resolved.problems:
        logger.error(f"ubap configuration error: {problem}")
    return partitions_for(resolved.world), resolved


daily_partitions, WORLD = build_partitions()
LOAD_PROBLEMS: tuple[str, ...] = WORLD.problems


def default_partition_range(
    partitions: dg.DailyPartitionsDefinition | None = None,
) -> tuple[str | None, str | None]:
    """The first and last day partition a full materialization covers: the world's first day to
    yesterday (synthetic, live logs) or to the data's last day (historic logs)."""
    partitions = partitions or daily_partitions
    return partitions.get_first_partition_key(), partitions.get_last_partition_key()
