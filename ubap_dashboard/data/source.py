"""Where every page reads from: the current snapshot, what it holds, a reader per helper,
the cache, and whole small tables."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import streamlit as st

from ubap_assets.warehouse.paths import snapshot_dir
from ubap_assets.warehouse.reader import (
    SnapshotMeta,
    SnapshotReader,
    UnreadableSnapshotError,
    resolve_snapshot,
)
from ubap_assets.warehouse.snapshots import NoSnapshotError, Snapshot

# Snapshots are immutable, so a long TTL is safe; it only bounds memory.
cached = st.cache_data(ttl="1h", max_entries=64, show_spinner=False)


class SnapshotChanged(RuntimeError):
    """The snapshot a page resolved was replaced and pruned mid-render: rerun the page."""


@contextmanager
def reading(snap: Snapshot) -> Iterator[SnapshotReader]:
    """A reader of ``snap`` for one helper; SnapshotChanged if the file was pruned meanwhile."""
    try:
        with SnapshotReader(snap) as reader:
            yield reader
    except FileNotFoundError as err:  # pruned after a newer snapshot went live
        raise SnapshotChanged(str(err)) from err


@dataclass(frozen=True)
class SnapshotInfo:
    meta: SnapshotMeta
    tables: frozenset[str]

    def has(self, *tables: str) -> bool:
        return all(name in self.tables for name in tables)


def current() -> Snapshot | None:
    """The snapshot the CURRENT pointer names now, or None when there is none to read (before
    the first publication, or a broken pointer or file: ``no_snapshot_reason`` says which)."""
    try:
        snap = resolve_snapshot(snapshot_dir())
        snapshot_info(snap)  # opens the file once (cached), so a damaged one is caught here
        return snap
    except NoSnapshotError:
        return None


def no_snapshot_reason() -> tuple[str, bool]:
    """Why there is nothing to show (the read module's message names the command to run), and
    whether that is because what was published cannot be read."""
    try:
        snapshot_info(resolve_snapshot(snapshot_dir()))
    except UnreadableSnapshotError as err:
        return str(err), True
    except NoSnapshotError as err:
        return str(err), False
    return "", False


@cached
def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    with reading(snap) as reader:
        return SnapshotInfo(meta=reader.meta(), tables=reader.tables)


def snap_has(snap: Snapshot, *tables: str) -> bool:
    return snapshot_info(snap).has(*tables)


@cached
def table_status(snap: Snapshot) -> pl.DataFrame:
    """One row per served table: refreshed by the publishing run, or the reason it was not.
    Empty for snapshots published before the table existed."""
    with reading(snap) as reader:
        return reader.table_status()


def not_refreshed(snap: Snapshot) -> dict[str, str]:
    """Table name -> reason, for the served tables the publishing run did not refresh."""
    status = table_status(snap).filter(~pl.col("refreshed"))
    return {
        name: reason or "not refreshed"
        for name, reason in status.select("table_name", "reason").rows()
    }


@cached
def table(snap: Snapshot, name: str, order_by: str | None = None) -> pl.DataFrame:
    """A whole (small) serving table; ``order_by`` is a trusted column list from this package."""
    with reading(snap) as reader:
        return reader.whole_table(name, order_by)
