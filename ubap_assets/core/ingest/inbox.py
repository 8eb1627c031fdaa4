"""What changed in the inbox since the last look, and which days a file touches (for a sensor)."""

import os
import time
from dataclasses import dataclass
from datetime import date

import polars as pl

from ubap_assets.core.ingest.canonical import event_timestamps, timestamp_exprs
from ubap_assets.core.ingest.mapping import load_mapping
from ubap_assets.core.ingest.read import is_blank, list_files, scan_file


def inbox_state(source: str, min_age_s: float = 0.0) -> dict[str, str]:
    """Event files under ``source`` -> ``"<mtime_ns>:<size>"``.

    Files modified less than ``min_age_s`` ago are left out (they may still be being written).
    """
    now = time.time()
    state: dict[str, str] = {}
    for path in list_files(source):
        st = os.stat(path)
        if now - st.st_mtime >= min_age_s:
            state[path] = f"{st.st_mtime_ns}:{st.st_size}"
    return state


@dataclass(frozen=True)
class InboxChange:
    changed: list[str]  # new or modified files
    removed: list[str]  # files that were there last time and are gone


def diff_inbox(previous: dict[str, str], current: dict[str, str]) -> InboxChange:
    changed = sorted(p for p, fp in current.items() if previous.get(p) != fp)
    removed = sorted(p for p in previous if p not in current)
    return InboxChange(changed, removed)


def file_days(path: str, mapping: str | None = None) -> list[date]:
    """The UTC days the rows of one file fall on (reads only the timestamp columns)."""
    if is_blank(path):
        return []
    resolved = load_mapping(mapping)
    lf = scan_file(path)
    schema = lf.collect_schema()
    exprs, offset, _ = timestamp_exprs(resolved.fields["event_ts"], schema.names(), schema)
    if not exprs:
        return []
    df = lf.select(
        *(e.alias(f"__ts{i}") for i, e in enumerate(exprs)),
        *([offset.alias("__offset")] if offset is not None else []),
    ).collect()
    candidates = [df[f"__ts{i}"] for i in range(len(exprs))]
    ts = event_timestamps(candidates, df["__offset"] if offset is not None else None, resolved)
    days = pl.select(ts["event_ts"].dt.date()).to_series()
    return sorted(days.drop_nulls().unique().to_list())
