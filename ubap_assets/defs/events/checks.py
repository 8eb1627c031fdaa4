"""Checks on each materialized slice of events; the structural ones block downstream assets."""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import polars as pl

from ubap_assets.core.schema import EVENT_TYPES, EVENTS_SCHEMA

KEY_COLUMNS = ("event_id", "user_id", "session_id", "event_ts", "event_type", "page_id")

_SPECS = {
    "schema_matches": ("Columns and types are exactly the event schema.", True),
    "event_ids_unique": ("No two events share an event_id.", True),
    "key_columns_not_null": ("No nulls in " + ", ".join(KEY_COLUMNS) + ".", True),
    "timestamps_inside_partition": ("Every event_ts falls inside its day partition.", True),
    "known_event_types": ("Every event_type is one of the documented types.", True),
    "sessions_well_formed": ("A session belongs to one user and lasts under 24 hours.", False),
    "purchases_have_revenue": ("Every purchase has revenue > 0; nothing else has revenue.", False),
}


def event_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset="events", description=text, blocking=blocking)
        for name, (text, blocking) in _SPECS.items()
    ]


def _result(name: str, bad: int, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=bad == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failing_rows": bad, **metadata},
    )


def event_check_results(
    frame: pl.DataFrame, start: datetime, end: datetime
) -> Iterator[dg.AssetCheckResult]:
    schema_diff = {
        name: str(frame.schema.get(name)) for name, dtype in EVENTS_SCHEMA.items()
        if frame.schema.get(name) != dtype
    }
    extra = [c for c in frame.columns if c not in EVENTS_SCHEMA]
    yield _result(
        "schema_matches", len(schema_diff) + len(extra), mismatched=str(schema_diff), extra=str(extra)
    )
    if schema_diff:
        return
    yield _result("event_ids_unique", frame.height - frame["event_id"].n_unique())
    nulls = frame.select(pl.col(c).null_count() for c in KEY_COLUMNS).row(0)
    yield _result("key_columns_not_null", sum(nulls), by_column=str(dict(zip(KEY_COLUMNS, nulls))))
    outside = frame.filter((pl.col("event_ts") < start) | (pl.col("event_ts") >= end)).height
    yield _result("timestamps_inside_partition", outside, window=f"[{start}, {end})")
    unknown = frame.filter(~pl.col("event_type").is_in(EVENT_TYPES)).height
    yield _result("known_event_types", unknown)
    sessions = frame.group_by("session_id").agg(
        pl.col("user_id").n_unique().alias("users"),
        (pl.col("event_ts").max() - pl.col("event_ts").min()).alias("span"),
    )
    malformed = sessions.filter(
        (pl.col("users") > 1) | (pl.col("span") >= pl.duration(hours=24))
    ).height
    yield _result("sessions_well_formed", malformed, sessions=sessions.height)
    is_purchase = pl.col("event_type") == "purchase"
    bad_revenue = frame.filter(
        (is_purchase & ~(pl.col("revenue") > 0).fill_null(False))
        | (~is_purchase & pl.col("revenue").is_not_null())
    ).height
    yield _result("purchases_have_revenue", bad_revenue)
