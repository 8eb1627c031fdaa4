"""Every environment variable of the code location, declared once (pydantic-settings).

Dagster-free. Names and defaults are the documented ones (README, "Configuration"): ``UBAP_*``
for the data, the schedule and the models, ``GEMINI_API_KEY`` for the summary's LLM. Empty
means unset.

Reading never raises: ``load_settings`` replaces a bad value (``UBAP_HISTORY_DAYS=0``,
``UBAP_START_DATE=garbage``) by its default and returns a one-line problem that names the
variable and the fix. The code location logs the problems when it loads (so it still loads in
the Dagster UI) and every events run fails with them (``defs/events``). The API has its own
settings (``ubap_api/settings.py``).
"""

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SYNTHETIC = "synthetic"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"  # 02:00 UTC
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
ENV_PREFIX = "UBAP_"
GEMINI_API_KEY = "GEMINI_API_KEY"

# What to do about a bad value of each variable (the message names the variable and the value).
_FIX = {
    "source": "set it to 'synthetic', 'inbox' or a folder/glob of event files",
    "source_mapping": "use a built-in mapping name or the path of a .json/.toml mapping file",
    "users": "set it to a whole number of users, at least 1 (default 20000), or unset it",
    "seed": "set it to a whole number, 0 or more (default 7), or unset it",
    "history_days": "set it to a whole number of days, at least 1 (default 90), or unset it",
    "start_date": "write the first day as YYYY-MM-DD (e.g. 2026-01-05), or unset it",
    "max_reject_share": "set it to a number between 0 and 1 (default 0.05), or unset it",
    "plant_anomalies": "set it to true (default) or false (a clean world), or unset it",
    "retrain_every_days": "set it to a whole number of days, at least 1 (default 7: weekly), "
    "or unset it",
    "segment_trend_days": "set it to a whole number of days, at least 28 (default 90: the "
    "segment trends' trailing window), or unset it",
    "engine": "set it to 'duckdb' (default, embedded) or 'spark', or unset it",
    "spark_remote": "set it to a Spark Connect URL such as sc://spark-host:15002, or unset it "
    "for a local Spark",
}


class Settings(BaseSettings):
    """The code location's environment variables (``UBAP_`` + the field name, upper case)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    # Where things live; unset = under the data directory (see warehouse/paths.py).
    data_dir: Path | None = None
    warehouse: Path | None = None
    snapshot_dir: Path | None = None
    inbox_dir: Path | None = None

    # The event source and the synthetic world.
    source: str = SYNTHETIC
    source_mapping: str = ""
    pages_file: str = ""
    users: int = Field(20_000, ge=1)
    seed: int = Field(7, ge=0)
    history_days: int = Field(90, ge=1)
    start_date: date | None = None
    max_reject_share: float = Field(0.05, ge=0, le=1)
    plant_anomalies: bool = True  # false: the synthetic world plants no anomaly (a clean world)

    # The nightly schedule; an invalid cron is handled by defs/schedules.py (stopped, says why).
    nightly_cron: str = DEFAULT_NIGHTLY_CRON
    # Models and the recommender's tuning retrain when a new period of this many days has
    # begun (core/cadence.py); every night only scores with them.
    retrain_every_days: int = Field(7, ge=1)
    # segment_trends and funnel_segments cover this many trailing days up to the data end, under
    # today's segments (core/trends); at least four weeks, so the detector's warm-up fits in.
    segment_trend_days: int = Field(90, ge=28)

    # Where the heavy SQL stages run (README, "Scaling out"): the embedded DuckDB warehouse, or
    # Apache Spark over Hive-partitioned Parquet in the lake folder (unset = <data dir>/lake).
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_remote: str = ""  # sc://host:port (Spark Connect); unset = local Spark
    spark_master: str = "local[2]"
    lake_dir: Path | None = None

    # The recommendations' text embedder and the summary's LLM.
    embedder: str = "sentence"
    embedding_model: str = ""
    gemini_api_key: str = Field("", validation_alias=GEMINI_API_KEY)
    gemini_model: str = ""
    gemini_base_url: str = ""

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

    @field_validator("spark_remote", mode="after")
    @classmethod
    def _spark_connect_url(cls, value: str) -> str:
        if value and not value.startswith("sc://"):
            raise ValueError("not a Spark Connect URL (sc://host:port)")
        return value

    @field_validator("engine", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("source", "source_mapping", "pages_file", "spark_remote", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @property
    def is_synthetic(self) -> bool:
        return self.source.lower() == SYNTHETIC

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field (``users`` -> ``UBAP_USERS``)."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], fields: tuple[str, ...] = ()) -> "Settings":
        """The settings a given environment holds instead of ``os.environ`` (only ``fields``
        when given, the rest at their defaults); raises ``ValidationError`` on a bad value."""
        values = {}
        for field in fields or tuple(cls.model_fields):
            raw = environ.get(cls.variable(field), "")
            if raw.strip():
                alias = cls.model_fields[field].validation_alias
                values[alias if isinstance(alias, str) else field] = raw
        return _GivenValues(**values)


class _GivenValues(Settings):
    """Settings from the values passed in only, never ``os.environ`` (``from_environ``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class LoadedSettings(NamedTuple):
    settings: Settings
    problems: tuple[str, ...]  # one line each: the variable, its value, the fix


def _problem(error: dict) -> str:
    field = str(error["loc"][0])
    reason = error["msg"].removeprefix("Value error, ")
    variable = Settings.variable(field) if field in Settings.model_fields else field
    return f"{variable}={error['input']!r} is invalid ({reason}): {_FIX.get(field, '')}"


def _read_settings() -> LoadedSettings:
    try:
        return LoadedSettings(Settings(), ())
    except ValidationError as err:
        errors = err.errors()
        bad = {str(e["loc"][0]) for e in errors}
        defaults = {name: Settings.model_fields[name].default for name in bad}
        return LoadedSettings(Settings(**defaults), tuple(_problem(e) for e in errors))


def _environment_key() -> tuple[tuple[str, str], ...]:
    """The variables the settings read (names compared without case, as pydantic-settings
    does)."""
    return tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.upper().startswith(ENV_PREFIX) or name.upper() == GEMINI_API_KEY
        )
    )


# The last settings read and the variables they were read from. Reading them takes about 7 ms
# (pydantic-settings walks the environment), and a run asks for them a few hundred times.
_last_read: tuple[tuple[tuple[str, str], ...], LoadedSettings] | None = None


def load_settings() -> LoadedSettings:
    """The settings, with every bad value replaced by its default and reported as a problem.
    Read again whenever a variable they come from changed since the last call."""
    global _last_read
    key = _environment_key()
    if _last_read is None or _last_read[0] != key:
        _last_read = (key, _read_settings())
    return _last_read[1]


def current_settings() -> Settings:
    """The settings now (bad values replaced by their defaults; see ``load_settings``)."""
    return load_settings().settings


def settings_problems() -> tuple[str, ...]:
    return load_settings().problems
