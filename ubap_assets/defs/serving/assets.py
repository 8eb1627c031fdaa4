"""The last asset of the graph: publish an immutable serving snapshot for the API/dashboard."""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.defs.serving.status import (
    check_results,
    failed_blocking,
    latest_materializations,
    table_status,
)
from ubap_assets.lib.warehouse_io import memory_share
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.paths import snapshot_dir
from ubap_assets.warehouse.snapshots import (
    TABLE_STATUS,
    NoSnapshotError,
    SnapshotBase,
    current_snapshot,
    list_snapshots,
    publish_snapshot,
    read_table_status,
    snapshot_meta_frame,
    snapshot_tables,
)

SERVING_SNAPSHOT = "serving_snapshot"
# The publish runs under half the warehouse engine's memory cap: it is a copy and a sort, which
# spill to disk at little cost, and it runs last, on top of what earlier steps left resident.
# Measured at 9.4M events: peak RSS 959 MiB under 512 MiB, 1,474 MiB under 1 GiB, same time.
PUBLISH_MEMORY_SHARE = 0.5


class ServingSnapshotConfig(dg.Config):
    keep: int = Field(default=3, description="How many published snapshots stay on disk (>= 1).")
    incremental: bool = Field(
        default=True,
        description="Start from the snapshot in service where this instance published it: keep "
        "the tables not rewritten since, bring the recent events up to date from the rewritten "
        "days only. False: copy every table from the warehouse.",
    )


def _asset_graph(context: dg.AssetExecutionContext):
    # Every check of the code location; under dg.materialize (no repository) the job's own.
    try:
        return context.repository_def.asset_graph
    except Exception:  # noqa: BLE001 - dagster raises its private CheckError when unset
        return context.job_def.asset_layer.asset_graph


def _previous_copies(blocked: dict[str, str], target: Path) -> dict[str, Path]:
    """Blocked tables the snapshot in service holds, with that snapshot's file."""
    try:
        previous = current_snapshot(target)
    except NoSnapshotError:
        return {}
    held = snapshot_tables(previous.path)
    return {name: previous.path for name in blocked if name in held}


_PAGE = 100


def _days_rewritten_since(
    instance: dg.DagsterInstance, table: str, storage_id: int
) -> tuple[date | None, bool]:
    """For a day-partitioned ``table`` materialized after the event ``storage_id``: the first
    day rewritten since, and whether every such materialization named its day."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(table), after_storage_id=storage_id
    )
    first: date | None = None
    by_day = True
    cursor = None
    while True:
        result = instance.fetch_materializations(records_filter, limit=_PAGE, cursor=cursor)
        for record in result.records:
            partition = record.partition_key
            if partition is None:
                by_day = False
                continue
            try:
                day = date.fromisoformat(partition)
            except ValueError:
                by_day = False
                continue
            first = day if first is None or day < first else first
        if not result.has_more:
            return first, by_day
        cursor = result.cursor


def _snapshot_base(
    instance: dg.DagsterInstance, target: Path, latest: dict[str, dg.EventLogRecord | None]
) -> tuple[SnapshotBase | None, str]:
    """The snapshot in service as the start of the next one, when this instance published it
    (so the tables rewritten since are known: ``latest``, each table's newest
    materialization), and a note of what is reused."""
    try:
        previous = current_snapshot(target)
    except NoSnapshotError:
        return None, "no snapshot in service: every table copied"
    records = instance.fetch_materializations(dg.AssetKey(SERVING_SNAPSHOT), limit=1).records
    published = records[0] if records else None
    snapshot_id = published and published.asset_materialization.metadata.get("snapshot_id")
    if snapshot_id is None or snapshot_id.value != previous.snapshot_id:
        return None, "the snapshot in service was not published by this instance: all copied"
    with duckdb.connect(str(previous.path), read_only=True) as con:
        stale = read_table_status(con)  # served from elsewhere or kept: copy them afresh
    unchanged: set[str] = set()
    events_since = None
    for table in t.SERVING_TABLES:
        if table in stale:
            continue
        newest = latest.get(table)
        if newest is None or newest.storage_id <= published.storage_id:
            unchanged.add(table)
        elif table == t.EVENTS:
            first, by_day = _days_rewritten_since(instance, table, published.storage_id)
            if by_day:
                events_since = first
    base = SnapshotBase(previous.path, frozenset(unchanged), events_since)
    events = (
        "unchanged"
        if t.EVENTS in unchanged
        else f"updated from {events_since}"
        if events_since
        else "rebuilt"
    )
    note = f"from {previous.snapshot_id}: {len(unchanged)} tables unchanged, recent events {events}"
    return base, note


def _carried_times(path_by_table: dict[str, Path]) -> dict[str, datetime | None]:
    """When each carried table was built, from the table_status of the snapshot holding it
    (each snapshot file opened once)."""
    times: dict[str, datetime | None] = dict.fromkeys(path_by_table)
    for path in set(path_by_table.values()):
        with duckdb.connect(str(path), read_only=True) as con:
            if TABLE_STATUS in warehouse_tables(con):
                rows = con.execute(f"SELECT table_name, materialized_at FROM {TABLE_STATUS}")
                times.update((name, at) for name, at in rows.fetchall() if name in times)
    return times


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    owners=["team:analytics"],
    deps=[dg.AssetKey(name) for name in t.SERVING_TABLES],
    # Last among the steps ready at the same time, so every check of the tables it copies
    # (blocking or not) has run and the snapshot's check_results are this run's.
    op_tags={"dagster/priority": "-100"},
)
def serving_snapshot(
    context: dg.AssetExecutionContext, config: ServingSnapshotConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One published, immutable copy of the serving tables that the API and dashboard read.

    Runs last, and alone after a failed run (`publish_after_failure` launches it), so a failure
    never keeps what did succeed from being served. Copies every table of SERVING_TABLES that
    exists in the warehouse, trimmed to what the readers need; a table whose latest blocking
    check failed is served from the previous snapshot instead. Adds `snapshot_meta`,
    `check_results` and `table_status` (per table: refreshed by the run, or the reason not),
    then swaps the CURRENT pointer atomically and keeps the newest `keep`.
    """
    if config.keep < 1:
        raise dg.Failure(f"keep={config.keep}: keep at least 1 snapshot (the current one)")
    checks = check_results(context.instance, _asset_graph(context))
    blocked = {k: v for k, v in failed_blocking(checks).items() if k in t.SERVING_TABLES}

    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    snapshot_id = f"{now:%Y%m%dT%H%M%S}-{context.run_id[:8]}"
    target = snapshot_dir()
    carried = _previous_copies(blocked, target)
    latest = latest_materializations(context.instance, t.SERVING_TABLES)
    base, base_note = (
        _snapshot_base(context.instance, target, latest)
        if config.incremental
        else (None, "incremental publishing off: every table copied")
    )
    context.log.info(f"serving snapshot {base_note}")
    with warehouse.get_connection() as con:
        present = warehouse_tables(con)
        status = table_status(
            context.instance,
            t.SERVING_TABLES,
            present,
            context.run_id,
            blocked=blocked,
            carried=_carried_times(carried),
            latest=latest,
        )
        copied = [
            name
            for name in t.SERVING_TABLES
            if name in carried or (name in present and name not in blocked)
        ]
        missing = [name for name in t.SERVING_TABLES if name not in copied]
        data_start = data_end = None
        if t.EVENTS in present:
            data_start, data_end = con.execute(
                f"SELECT min(event_ts)::DATE, max(event_ts)::DATE FROM {t.EVENTS}"
            ).fetchone()
        meta = snapshot_meta_frame(
            snapshot_id, context.run_id, now, data_start, data_end, copied, missing
        )
        with memory_share(con, warehouse.database, PUBLISH_MEMORY_SHARE):
            snapshot = publish_snapshot(
                con,
                copied,
                target,
                snapshot_id,
                keep=config.keep,
                extra={t.SNAPSHOT_META: meta, t.CHECK_RESULTS: checks, TABLE_STATUS: status},
                carried=carried,
                base=base,
            )

    with duckdb.connect(str(snapshot.path), read_only=True) as published:
        row_counts = {
            name: published.execute(f'SELECT count(*) FROM main."{name}"').fetchone()[0]
            for name in copied
        }
    kept = [s.snapshot_id for s in list_snapshots(target)]
    stale = status.filter(~pl.col("refreshed"))
    if missing:
        context.log.warning(f"published without {len(missing)} tables: {', '.join(missing)}")
    by_reason: dict[str, list[str]] = {}
    for name, reason in stale.select("table_name", "reason").rows():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        context.log.warning(f"not refreshed: {', '.join(names)}: {reason}")
    table_md = "\n".join(f"| {name} | {row_counts[name]:,} |" for name in copied)
    stale_md = "\n".join(
        f"| {name} | {reason} |" for name, reason in stale.select("table_name", "reason").rows()
    )
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": dg.MetadataValue.text(snapshot.snapshot_id),
            "path": dg.MetadataValue.path(str(snapshot.path)),
            "size_mb": dg.MetadataValue.float(round(snapshot.path.stat().st_size / 2**20, 2)),
            "tables": dg.MetadataValue.int(len(copied)),
            "missing_tables": dg.MetadataValue.text(", ".join(missing) or "none"),
            "tables_not_refreshed": dg.MetadataValue.int(stale.height),
            "not_refreshed": dg.MetadataValue.md(
                "| table | reason |\n|---|---|\n" + stale_md if stale.height else "none"
            ),
            "data_range": dg.MetadataValue.text(f"{data_start} .. {data_end}"),
            "built": dg.MetadataValue.text(base_note),
            "checks_recorded": dg.MetadataValue.int(checks.height),
            "checks_failed": dg.MetadataValue.int(checks.filter(~pl.col("passed")).height),
            "snapshots_kept": dg.MetadataValue.text(", ".join(kept)),
            "contents": dg.MetadataValue.md("| table | rows |\n|---|---|\n" + table_md),
        }
    )
