"""Where the behaviour data comes from and how much of it there is, read from the environment.

The defaults (20k synthetic users over the last 90 days) need nothing set. The same values are
the defaults of the run config, so a data engineer can override them per run in the launchpad.
"""

import os
from datetime import UTC, date, datetime, timedelta

SYNTHETIC = "synthetic"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer: set it to a whole number") from None


def history_days() -> int:
    days = _int_env("UBAP_HISTORY_DAYS", 90)
    if days < 1:
        raise ValueError(f"UBAP_HISTORY_DAYS must be at least 1 (got {days})")
    return days


def default_users() -> int:
    return _int_env("UBAP_USERS", 20_000)


def default_seed() -> int:
    return _int_env("UBAP_SEED", 7)


def default_source() -> str:
    return os.environ.get("UBAP_SOURCE", "").strip() or SYNTHETIC


def default_mapping() -> str:
    return os.environ.get("UBAP_SOURCE_MAPPING", "").strip()


def default_max_reject_share() -> float:
    raw = os.environ.get("UBAP_MAX_REJECT_SHARE", "").strip()
    try:
        return float(raw) if raw else 0.05
    except ValueError:
        raise ValueError(f"UBAP_MAX_REJECT_SHARE={raw!r} is not a number: use e.g. 0.05") from None


def history_start() -> date:
    """First day of the history: UBAP_START_DATE, else ``UBAP_HISTORY_DAYS`` before today (UTC)."""
    raw = os.environ.get("UBAP_START_DATE", "").strip()
    if raw:
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"UBAP_START_DATE={raw!r} is not a date: use YYYY-MM-DD") from None
    return datetime.now(UTC).date() - timedelta(days=history_days())
