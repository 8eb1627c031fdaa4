"""The events' run-config defaults and clock, read from the project settings.

The variables themselves (names, defaults, validation) are declared once in
``ubap_assets.settings``. The defaults here (20k synthetic users, a 90-day first history) need
nothing set and are the defaults of the run config, so a data engineer can override them per
run in the launchpad. They never raise: a bad value reads as its default, and the problem is
logged when the code location loads and fails every events run (``partitions.py``,
``assets.py``).
"""

from datetime import UTC, date, datetime

from ubap_assets.settings import current_settings


def today() -> date:
    """Today in UTC (the one clock the defaults read; tests move it)."""
    return datetime.now(UTC).date()


# The run config's defaults (pydantic default factories: they must not raise).


def history_days() -> int:
    return current_settings().history_days


def default_users() -> int:
    return current_settings().users


def default_seed() -> int:
    return current_settings().seed


def default_source() -> str:
    return current_settings().source


def default_mapping() -> str:
    return current_settings().source_mapping


def default_max_reject_share() -> float:
    return current_settings().max_reject_share


def history_start() -> date:
    """The first day of the pinned world (UBAP_START_DATE, the recorded first day, or the data's
    own first day); see ``world.py``."""
    from ubap_assets.defs.events.world import current_world

    return current_world(record=False).world.first_day
