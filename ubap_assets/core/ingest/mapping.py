"""Mappings: how the columns and event names of a file become the ubap event schema."""

import json
import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class FieldSpec:
    """Where one target field comes from: candidate columns, a concatenation, or a constant."""

    candidates: tuple[str, ...] = ()
    concat: tuple[tuple[str, ...], ...] = ()
    sep: str = "-"
    value: str | None = None

    def columns(self) -> tuple[str, ...]:
        return self.candidates + tuple(c for part in self.concat for c in part)


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


def _field_spec(field: str, spec: Any, where: str) -> FieldSpec:
    def names(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise MappingError(
            f"{where}: columns.{field} must be a column name, a list of candidate column names, "
            f'{{"concat": [...], "sep": "-"}} or {{"value": "..."}}; got {value!r}'
        )

    if isinstance(spec, dict):
        if "value" in spec:
            return FieldSpec(value=str(spec["value"]))
        if "concat" in spec and isinstance(spec["concat"], list) and spec["concat"]:
            return FieldSpec(
                concat=tuple(names(part) for part in spec["concat"]), sep=str(spec.get("sep", "-"))
            )
    return FieldSpec(candidates=names(spec))


def parse_mapping(raw: dict[str, Any], where: str = "mapping") -> Mapping:
    """Validate mapping content (a dict shaped like a mapping file) into a Mapping."""
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: a mapping is a JSON/TOML object, got {type(raw).__name__}")
    unknown_keys = set(raw) - {
        "name",
        "description",
        "columns",
        "event_types",
        "unmapped_event_types",
        "timestamp_format",
        "time_zone",
        "session_gap_minutes",
    }
    if unknown_keys:
        raise MappingError(f"{where}: unknown keys {sorted(unknown_keys)}; see docs/ingest.md")
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        raise MappingError(f"{where}: 'columns' must be an object of target field -> column")
    bad = sorted(set(columns) - set(TARGET_FIELDS))
    if bad:
        raise MappingError(
            f"{where}: unknown target fields {bad} in 'columns'; valid: {', '.join(TARGET_FIELDS)}"
        )
    fields = {f: _field_spec(f, spec, where) for f, spec in columns.items()}
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise MappingError(f"{where}: 'columns' must map the required fields {missing}")

    event_types: dict[str, str] = {}
    for source, target in (raw.get("event_types") or {}).items():
        if target is not None and target not in (*EVENT_TYPES, "ignore"):
            raise MappingError(
                f"{where}: event_types[{source!r}] = {target!r} is not an event type; use one of "
                f"{', '.join(EVENT_TYPES)}, or null / 'ignore' to ignore such rows"
            )
        event_types[norm_event(str(source))] = IGNORE if target in (None, "ignore") else target
    unmapped = raw.get("unmapped_event_types", "reject")
    if unmapped not in ("reject", "ignore", *EVENT_TYPES):
        raise MappingError(
            f"{where}: unmapped_event_types must be 'reject', 'ignore' or an event type; "
            f"got {unmapped!r}"
        )
    ts_format = raw.get("timestamp_format") or "auto"
    if ts_format not in ("auto", *EPOCH_FORMATS) and "%" not in ts_format:
        raise MappingError(
            f"{where}: timestamp_format {ts_format!r} is neither 'auto', one of "
            f"{', '.join(EPOCH_FORMATS)} nor a strftime format such as '%d/%m/%Y %H:%M'"
        )
    tz = raw.get("time_zone") or "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(
            f"{where}: time_zone {tz!r} is not an IANA zone (e.g. 'Europe/Berlin')"
        ) from exc
    gap = raw.get("session_gap_minutes", 30)
    if not isinstance(gap, int) or gap <= 0:
        raise MappingError(f"{where}: session_gap_minutes must be a positive integer, got {gap!r}")
    return Mapping(
        name=str(raw.get("name") or where),
        fields=fields,
        event_types=event_types,
        unmapped_event_types=unmapped,
        timestamp_format=ts_format,
        time_zone=tz,
        session_gap_minutes=gap,
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
