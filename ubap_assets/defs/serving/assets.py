"""The last asset of the graph: publish an immutable serving snapshot for the API/dashboard."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.defs.serving.status import check_results, failed_blocking, table_status
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.paths import snapshot_dir
from ubap_assets.warehouse.snapshots import (
    TABLE_STATUS,
    NoSnapshotError,
    current_snapshot,
    list_snapshots,
    publish_snapshot,
    snapshot_meta_frame,
    snapshot_tables,
)

SERVING_SNAPSHOT = "serving_snapshot"


class ServingSnapshotConfig(dg.Config):
    keep: int = Field(default=3, description="How many published snapshots stay on disk (>= 1).")


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
    with warehouse.get_connection() as con:
        present = warehouse_tables(con)
        status = table_status(
            context.instance,
            t.SERVING_TABLES,
            present,
            context.run_id,
            blocked=blocked,
            carried=_carried_times(carried),
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
        snapshot = publish_snapshot(
            con,
            copied,
            target,
            snapshot_id,
            keep=config.keep,
            extra={t.SNAPSHOT_META: meta, t.CHECK_RESULTS: checks, TABLE_STATUS: status},
            carried=carried,
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
            "checks_recorded": dg.MetadataValue.int(checks.height),
            "checks_failed": dg.MetadataValue.int(checks.filter(~pl.col("passed")).height),
            "snapshots_kept": dg.MetadataValue.text(", ".join(kept)),
            "contents": dg.MetadataValue.md("| table | rows |\n|---|---|\n" + table_md),
        }
    )
