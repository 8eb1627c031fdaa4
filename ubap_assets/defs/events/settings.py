"""Where the behaviour data comes from and how much of it there is, read from the environment.

The defaults (20k synthetic users, a 90-day first history) need nothing set. The same values are
the defaults of the run config, so a data engineer can override them per run in the launchpad.

Reading never raises: a bad value (``UBAP_HISTORY_DAYS=0``, ``UBAP_START_DATE=garbage``) falls
back to its default and becomes a one-line problem that names the variable and the fix. The
code location logs the problems when it loads (so it still loads in the Dagster UI) and every
events run fails with them (see ``partitions.py`` and ``assets.py``).
"""

from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SYNTHETIC = "synthetic"

# What to do about a bad value of each variable (the message names the variable and the value).
_FIX = {
    "source": "set it to 'synthetic', 'inbox' or a folder/glob of event files",
    "source_mapping": "use a built-in mapping name or the path of a .json/.toml mapping file",
    "users": "set it to a whole number of users, at least 1 (default 20000), or unset it",
    "seed": "set it to a whole number, 0 or more (default 7), or unset it",
    "history_days": "set it to a whole number of days, at least 1 (default 90), or unset it",
    "start_date": "write the first day as YYYY-MM-DD (e.g. 2026-01-05), or unset it",
    "max_reject_share": "set it to a number between 0 and 1 (default 0.05), or unset it",
}


class EventSettings(BaseSettings):
    """The ``UBAP_*`` variables of the event source (empty means unset)."""

    model_config = SettingsConfigDict(env_prefix="UBAP_", env_ignore_empty=True, extra="ignore")

    source: str = SYNTHETIC
    source_mapping: str = ""
    users: int = Field(20_000, ge=1)
    seed: int = Field(7, ge=0)
    history_days: int = Field(90, ge=1)
    start_date: date | None = None
    max_reject_share: float = Field(0.05, ge=0, le=1)

    @field_validator("start_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        # pydantic would read "20260105" as seconds since 1970; only YYYY-MM-DD is a date here.
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("not a date in the form YYYY-MM-DD") from None
        return value

    @field_validator("source", "source_mapping", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @property
    def is_synthetic(self) -> bool:
        return self.source.lower() == SYNTHETIC


class Loaded(NamedTuple):
    settings: EventSettings
    problems: tuple[str, ...]  # one line each: the variable, its value, the fix


def _problem(error: dict) -> str:
    field = str(error["loc"][0])
    reason = error["msg"].removeprefix("Value error, ")
    return f"UBAP_{field.upper()}={error['input']!r} is invalid ({reason}): {_FIX.get(field, '')}"


def load() -> Loaded:
    """The settings, with every bad value replaced by its default and reported as a problem."""
    try:
        return Loaded(EventSettings(), ())
    except ValidationError as err:
        errors = err.errors()
        bad = {str(e["loc"][0]) for e in errors}
        defaults = {name: EventSettings.model_fields[name].default for name in bad}
        return Loaded(EventSettings(**defaults), tuple(_problem(e) for e in errors))


def problems() -> tuple[str, ...]:
    return load().problems


def today() -> date:
    """Today in UTC (the one clock the defaults read; tests move it)."""
    return datetime.now(UTC).date()


# The run config's defaults (pydantic default factories: they must not raise).


def history_days() -> int:
    return load().settings.history_days


def default_users() -> int:
    return load().settings.users


def default_seed() -> int:
    return load().settings.seed


def default_source() -> str:
    return load().settings.source


def default_mapping() -> str:
    return load().settings.source_mapping


def default_max_reject_share() -> float:
    return load().settings.max_reject_share


def history_start() -> date:
    """The first day of the pinned world (UBAP_START_DATE, the recorded first day, or the data's
    own first day); see ``world.py``."""
    from ubap_assets.defs.events.world import current_world

    return current_world(record=False).world.first_day
