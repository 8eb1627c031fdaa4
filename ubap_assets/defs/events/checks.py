"""Checks on the events table, run in SQL right after each write; structural ones block."""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import duckdb
import polars as pl

from ubap_assets.core.schema import EVENT_TYPES, EVENTS_SCHEMA

KEY_COLUMNS = ("event_id", "user_id", "session_id", "event_ts", "event_type", "page_id")
_DUCKDB_TYPES = {"String": "VARCHAR", "Datetime": "TIMESTAMP", "Float64": "DOUBLE"}

_SPECS = {
    "schema_matches": ("Columns and types are exactly the event schema.", True),
    "event_ids_unique": ("No two events in the table share an event_id.", True),
    "key_columns_not_null": ("No nulls in " + ", ".join(KEY_COLUMNS) + ".", True),
    "timestamps_inside_partition": ("Every event written falls inside its day partitions.", True),
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
        description=f"{_SPECS[name][0]} Failing rows in this window: {bad:,}." if bad else None,
        severity=dg.AssetCheckSeverity.ERROR if _SPECS[name][1] else dg.AssetCheckSeverity.WARN,
        metadata={"failing_rows": bad, **{k: str(v) for k, v in metadata.items()}},
    )


# Rows of the window per pass of a DISTINCT or GROUP BY over a key: a longer window is split
# by a hash of the key, so the engine's hash table holds about this many keys (its aggregation
# spills beyond the warehouse's memory cap, lib/warehouse_io.warehouse_memory_limit). Measured
# on 94.2M events under a 1 GiB cap: one pass over the ids' hashes 7.7 s, over the sessions
# 6.7 s, peak RSS 1.6 GB; every slice rescans the window, so fewer passes are faster.
ROWS_PER_PASS = 100_000_000


def hash_slices(key: str, rows: int) -> list[tuple[str, list[int]]]:
    """(an AND clause, its parameters) per slice of ``key``'s hash for ``rows`` rows: every row
    with the same key falls in one slice; a single slice (no clause) up to ROWS_PER_PASS."""
    slices = max(1, -(-rows // ROWS_PER_PASS))
    if slices == 1:
        return [("", [])]
    # Typed parameters: with untyped ones the engine takes a slow path (60 s against 2.8 s for
    # one slice of 94M events).
    return [(f" AND hash({key}) % ?::UBIGINT = ?::UBIGINT", [slices, i]) for i in range(slices)]


def event_check_results(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, outside_window: int
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate every check on the window just written (uniqueness against the whole table)."""
    actual = {name: dtype for name, dtype, *_ in con.execute("DESCRIBE events").fetchall()}
    expected = {n: _DUCKDB_TYPES[type(t).__name__] for n, t in pl.Schema(EVENTS_SCHEMA).items()}
    mismatched = {n: actual.get(n) for n, t in expected.items() if actual.get(n) != t}
    extra = sorted(set(actual) - set(expected))
    yield _result(
        "schema_matches", len(mismatched) + len(extra), mismatched=mismatched, extra=extra
    )
    if mismatched:
        return
    window = "FROM events WHERE event_ts >= ? AND event_ts < ?"
    rows, others = con.execute(
        "SELECT count(*) FILTER (WHERE event_ts >= ? AND event_ts < ?), "
        "count(*) FILTER (WHERE NOT (event_ts >= ? AND event_ts < ?)) FROM events",
        [start, end, start, end],
    ).fetchone()
    # Unique in the whole table, at the cost of the window: repeats inside it, and its ids found
    # on other days (a probe of the other days' ids, not a DISTINCT over the whole history).
    # Both run in slices of the ids' hash (a repeat falls in one slice), so the engine's hash
    # table holds one slice of a long backfill, never all its ids.
    repeated = elsewhere = 0
    for part, args in hash_slices("event_id", rows):
        # distinct 64-bit hashes first: as many as rows proves the ids distinct; only otherwise
        # (a repeat, or a hash collision) are the ids themselves counted
        repeats = con.execute(
            f"SELECT count(*) - count(DISTINCT hash(event_id)) {window}{part}", [start, end, *args]
        ).fetchone()[0]
        if repeats:
            repeats = con.execute(
                f"SELECT count(*) - count(DISTINCT event_id) {window}{part}", [start, end, *args]
            ).fetchone()[0]
        repeated += repeats
        if not others:  # the window is the whole table (a full backfill): no other day to probe
            continue
        elsewhere += con.execute(
            f"WITH w AS (SELECT event_id {window}{part}) "
            "SELECT count(*) FROM events e SEMI JOIN w USING (event_id) "
            f"WHERE NOT (e.event_ts >= ? AND e.event_ts < ?){part}",
            [start, end, *args, start, end, *args],
        ).fetchone()[0]
    yield _result(
        "event_ids_unique", repeated + elsewhere, in_window=repeated, other_days=elsewhere
    )
    nulls = con.execute(
        "SELECT " + ", ".join(f"count(*) - count({c})" for c in KEY_COLUMNS) + " " + window,
        [start, end],
    ).fetchone()
    yield _result(
        "key_columns_not_null", sum(nulls), by_column=dict(zip(KEY_COLUMNS, nulls, strict=True))
    )
    yield _result("timestamps_inside_partition", outside_window, window=f"[{start}, {end})")
    unknown = con.execute(
        f"SELECT count(*) {window} AND NOT list_contains(?, event_type)",
        [start, end, list(EVENT_TYPES)],
    ).fetchone()[0]
    yield _result("known_event_types", unknown)
    malformed = sum(
        con.execute(
            f"SELECT count(*) FROM (SELECT session_id {window}{part} GROUP BY session_id "
            "HAVING count(DISTINCT user_id) > 1 "
            "OR max(event_ts) - min(event_ts) >= INTERVAL 24 HOUR)",
            [start, end, *args],
        ).fetchone()[0]
        for part, args in hash_slices("session_id", rows)
    )
    yield _result("sessions_well_formed", malformed)
    bad_revenue = con.execute(
        f"SELECT count(*) {window} AND ((event_type = 'purchase' AND coalesce(revenue, 0) <= 0) "
        "OR (event_type <> 'purchase' AND revenue IS NOT NULL))",
        [start, end],
    ).fetchone()[0]
    yield _result("purchases_have_revenue", bad_revenue)
