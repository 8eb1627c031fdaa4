"""Mappings: how the columns and event names of a file become the ubap event schema."""

import json
import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic

from ubap_assets.core.ingest.errors import MappingError
from ubap_assets.core.mappings import BUILTIN_MAPPINGS
from ubap_assets.core.schema import EVENT_TYPES

# Fields a mapping can fill. The first nine are the events columns; the rest feed users and pages.
TARGET_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "session_id",
    "event_ts",
    "event_type",
    "page_id",
    "device",
    "traffic_source",
    "revenue",
    "country",
    "signup_date",
    "page_url",
    "page_title",
    "page_description",
    "page_category",
    "page_type",
    "page_price",
    "page_brand",
)
REQUIRED_FIELDS: tuple[str, ...] = ("user_id", "event_ts", "event_type")
EPOCH_FORMATS: tuple[str, ...] = ("epoch_s", "epoch_ms", "epoch_us", "epoch_ns")
IGNORE = "__ignore__"


def norm_name(name: str) -> str:
    """Column names compare case- and separator-insensitively (``userId`` == ``user_id``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def norm_event(value: str) -> str:
    """Event names compare case-insensitively with runs of non-alphanumerics read as ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")


def resolve_columns(columns: list[str], names: tuple[str, ...]) -> list[str]:
    """Columns of the file matching the candidate names, in candidate order."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(norm_name(c), c)
    found: list[str] = []
    for name in names:
        col = name if name in columns else by_norm.get(norm_name(name))
        if col is not None and col not in found:
            found.append(col)
    return found


OFFSET_UNITS: dict[str, float] = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}  # -> microseconds
NUMBER_FIELDS: tuple[str, ...] = ("revenue", "page_price")


@dataclass(frozen=True)
class FieldSpec:
    """Where one target field comes from: candidate columns, a concatenation, or a constant;
    numbers times ``scale``; a timestamp plus the number in an ``offset`` column."""

    candidates: tuple[str, ...] = ()
    concat: tuple[tuple[str, ...], ...] = ()
    sep: str = "-"
    value: str | None = None
    scale: float | None = None
    offset: tuple[str, ...] = ()
    offset_unit: str = "s"

    def columns(self) -> tuple[str, ...]:
        return self.candidates + tuple(c for part in self.concat for c in part) + self.offset


@dataclass(frozen=True)
class Mapping:
    name: str
    fields: dict[str, FieldSpec]
    event_types: dict[str, str]  # normalised source value -> event type or IGNORE
    unmapped_event_types: str  # "reject", "ignore" or an event type
    timestamp_format: str  # "auto", an epoch_* unit, or a strftime format
    time_zone: str  # zone of naive timestamps
    session_gap_minutes: int

    def key(self) -> str:
        """A stable text identity (for caches and run keys)."""
        return json.dumps(
            {
                "name": self.name,
                "fields": {k: repr(v) for k, v in sorted(self.fields.items())},
                "event_types": sorted(self.event_types.items()),
                "rest": [
                    self.unmapped_event_types,
                    self.timestamp_format,
                    self.time_zone,
                    self.session_gap_minutes,
                ],
            }
        )


# --- the file format, validated by pydantic -------------------------------------------------

Names = str | list[str]


def _names(value: Names) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class ColumnSpec(pydantic.BaseModel):
    """One entry of ``columns``: a column name, a list of candidates, or an object."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    column: Names | None = None
    concat: list[Names] | None = None
    sep: str = "-"
    value: str | int | float | bool | None = None
    scale: pydantic.FiniteFloat | None = None
    offset: Names | None = None
    offset_unit: Literal["s", "ms", "us", "ns"] = "s"

    @pydantic.model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str | list) else data

    @pydantic.field_validator("column", "offset")
    @classmethod
    def _some_names(cls, value: Names | None) -> Names | None:
        if value is not None and (value == [] or "" in _names(value)):
            raise ValueError("give a column name or a non-empty list of column names")
        return value

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> "ColumnSpec":
        given = [k for k in ("column", "concat", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of a column name, a list of candidate column names, "
                f'{{"column": ...}}, {{"concat": [...], "sep": "-"}} or {{"value": "..."}}; '
                f"got {', '.join(given) or 'none'}"
            )
        if self.concat == []:
            raise ValueError("concat needs at least one column")
        return self

    def to_field(self) -> FieldSpec:
        return FieldSpec(
            candidates=_names(self.column) if self.column is not None else (),
            concat=tuple(_names(part) for part in self.concat or ()),
            sep=self.sep,
            value=None if self.value is None else str(self.value),
            scale=self.scale,
            offset=_names(self.offset) if self.offset is not None else (),
            offset_unit=self.offset_unit,
        )


class MappingFile(pydantic.BaseModel):
    """A mapping file (JSON or TOML) or a built-in mapping: see docs/ingest.md."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str | None = None
    columns: dict[str, ColumnSpec]
    event_types: dict[str, str | None] = {}
    unmapped_event_types: str = "reject"
    timestamp_format: str = "auto"
    time_zone: str = "UTC"
    session_gap_minutes: int = 30

    @pydantic.field_validator("columns")
    @classmethod
    def _targets(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        bad = sorted(set(columns) - set(TARGET_FIELDS))
        if bad:
            raise ValueError(f"unknown target fields {bad}; valid: {', '.join(TARGET_FIELDS)}")
        missing = [f for f in REQUIRED_FIELDS if f not in columns]
        if missing:
            raise ValueError(f"must map the required fields {missing}")
        return columns

    @pydantic.model_validator(mode="after")
    def _options_fit_their_field(self) -> "MappingFile":
        for name, spec in self.columns.items():
            if spec.scale is not None and name not in NUMBER_FIELDS:
                raise ValueError(
                    f"columns.{name}: scale applies only to {' and '.join(NUMBER_FIELDS)}"
                )
            if spec.offset is not None and name != "event_ts":
                raise ValueError(f"columns.{name}: offset applies only to event_ts")
        return self

    @pydantic.field_validator("event_types")
    @classmethod
    def _event_types(cls, event_types: dict[str, str | None]) -> dict[str, str | None]:
        for source, target in event_types.items():
            if target is not None and target not in (*EVENT_TYPES, "ignore"):
                raise ValueError(
                    f"{source!r}: {target!r} is not an event type; use one of "
                    f"{', '.join(EVENT_TYPES)}, or null / 'ignore' to ignore such rows"
                )
        return event_types

    @pydantic.field_validator("unmapped_event_types")
    @classmethod
    def _unmapped(cls, value: str) -> str:
        if value not in ("reject", "ignore", *EVENT_TYPES):
            raise ValueError(f"must be 'reject', 'ignore' or an event type; got {value!r}")
        return value

    @pydantic.field_validator("timestamp_format")
    @classmethod
    def _timestamp_format(cls, value: str) -> str:
        if value not in ("auto", *EPOCH_FORMATS) and "%" not in value:
            raise ValueError(
                f"{value!r} is neither 'auto', one of {', '.join(EPOCH_FORMATS)} nor a strftime "
                "format such as '%d/%m/%Y %H:%M'"
            )
        return value

    @pydantic.field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA zone (e.g. 'Europe/Berlin')") from exc
        return value

    @pydantic.field_validator("session_gap_minutes", mode="before")
    @classmethod
    def _gap(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"must be a positive integer (minutes), got {value!r}")
        return value


def _explain(exc: pydantic.ValidationError, where: str) -> MappingError:
    """One line per problem: where it is (``columns.revenue.scale``) and what is wrong."""
    keys = ", ".join(ColumnSpec.model_fields)
    problems = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = (
                f"unknown key; valid keys: {keys}"
                if loc.startswith("columns.")
                else f"unknown key; valid keys: {', '.join(MappingFile.model_fields)}"
            )
        problems.append(f"{loc}: {message}" if loc else message)
    return MappingError(f"{where}: {'; '.join(problems)} (see docs/ingest.md)")


def parse_mapping(raw: dict[str, Any], where: str = "mapping") -> Mapping:
    """Validate mapping content (a dict shaped like a mapping file) into a Mapping."""
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: a mapping is a JSON/TOML object, got {type(raw).__name__}")
    try:
        spec = MappingFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise _explain(exc, where) from None
    return Mapping(
        name=spec.name or where,
        fields={name: column.to_field() for name, column in spec.columns.items()},
        event_types={
            norm_event(source): IGNORE if target in (None, "ignore") else target
            for source, target in spec.event_types.items()
        },
        unmapped_event_types=spec.unmapped_event_types,
        timestamp_format=spec.timestamp_format,
        time_zone=spec.time_zone,
        session_gap_minutes=spec.session_gap_minutes,
    )


def load_mapping(mapping: str | None) -> Mapping:
    """None (native schema), a built-in name, or the path of a JSON or TOML mapping file."""
    if mapping is None or mapping == "":
        return parse_mapping(BUILTIN_MAPPINGS["native"], "native")
    if mapping in BUILTIN_MAPPINGS:
        return parse_mapping(BUILTIN_MAPPINGS[mapping], mapping)
    path = Path(mapping).expanduser()
    if not path.is_file():
        raise MappingError(
            f"mapping {mapping!r} is neither a built-in mapping ({', '.join(BUILTIN_MAPPINGS)}) "
            "nor an existing .json/.toml mapping file"
        )
    text = path.read_text(encoding="utf-8-sig")
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"mapping file {path} is not valid {path.suffix[1:]}: {exc}") from exc
    return parse_mapping(raw, str(path))


def suggest_mapping(columns: list[str]) -> str | None:
    """The built-in mapping whose required columns a file has, if any (for error messages)."""
    have = {norm_name(c) for c in columns}
    for name, raw in BUILTIN_MAPPINGS.items():
        mapping = parse_mapping(raw, name)
        if all(
            any(norm_name(c) in have for c in mapping.fields[f].columns()) for f in REQUIRED_FIELDS
        ):
            return name
    return None
