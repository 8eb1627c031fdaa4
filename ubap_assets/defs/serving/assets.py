"""The last asset of the graph: publish an immutable serving snapshot for the API/dashboard."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.paths import snapshot_dir
from ubap_assets.warehouse.snapshots import (
    CHECK_RESULTS_SCHEMA,
    list_snapshots,
    publish_snapshot,
    snapshot_meta_frame,
    warehouse_tables,
)


class ServingSnapshotConfig(dg.Config):
    keep: int = Field(default=3, description="How many published snapshots stay on disk (>= 1).")


def _latest_check_results(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """The latest evaluation of every asset check in the code location, one row per check."""
    # Every check of the code location; under dg.materialize (no repository) the job's own.
    try:
        graph = context.repository_def.asset_graph
    except Exception:  # noqa: BLE001 - dagster raises its private CheckError when unset
        graph = context.job_def.asset_layer.asset_graph
    rows = []
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record else None
        if record is None or evaluation is None:
            continue
        spec = graph.get_check_spec(key)
        rows.append(
            {
                "asset_key": key.asset_key.to_user_string(),
                "check_name": key.name,
                "passed": bool(evaluation.passed),
                "severity": evaluation.severity.value,
                "blocking": bool(evaluation.blocking or spec.blocking),
                "description": evaluation.description or spec.description or "",
                "evaluated_at": datetime.fromtimestamp(record.create_timestamp, UTC).replace(
                    tzinfo=None
                ),
                "run_id": record.run_id,
            }
        )
    return pl.DataFrame(rows, schema=CHECK_RESULTS_SCHEMA)


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    owners=["team:analytics"],
    deps=[dg.AssetKey(name) for name in t.SERVING_TABLES],
)
def serving_snapshot(
    context: dg.AssetExecutionContext, config: ServingSnapshotConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One published, immutable copy of the serving tables that the API and dashboard read.

    Runs last. Refuses to publish while any blocking asset check's latest evaluation failed, so
    a bad run leaves the previous snapshot in service. Copies every table of SERVING_TABLES that
    exists in the warehouse (missing ones are listed in metadata), adds `snapshot_meta` and
    `check_results`, then swaps the CURRENT pointer atomically and keeps the newest `keep`.
    """
    if config.keep < 1:
        raise dg.Failure(f"keep={config.keep}: keep at least 1 snapshot (the current one)")
    checks = _latest_check_results(context)
    # Dagster's own rule: a blocking check stops downstream only with ERROR severity.
    failed = checks.filter(pl.col("blocking") & ~pl.col("passed") & (pl.col("severity") == "ERROR"))
    if failed.height:
        names = ", ".join(f"{a}:{c}" for a, c in failed.select("asset_key", "check_name").rows())
        raise dg.Failure(
            f"blocking checks failed ({names}); the previous snapshot stays in service. "
            "Fix the data and re-materialize those assets."
        )

    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    snapshot_id = f"{now:%Y%m%dT%H%M%S}-{context.run_id[:8]}"
    target = snapshot_dir()
    with warehouse.get_connection() as con:
        present = warehouse_tables(con)
        copied = [name for name in t.SERVING_TABLES if name in present]
        missing = [name for name in t.SERVING_TABLES if name not in present]
        data_start = data_end = None
        if t.EVENTS in present:
            data_start, data_end = con.execute(
                f"SELECT min(event_ts)::DATE, max(event_ts)::DATE FROM {t.EVENTS}"
            ).fetchone()
        meta = snapshot_meta_frame(
            snapshot_id, context.run_id, now, data_start, data_end, copied, missing
        )
        row_counts = {
            name: con.execute(f'SELECT count(*) FROM main."{name}"').fetchone()[0]
            for name in copied
        }
        snapshot = publish_snapshot(
            con,
            copied,
            target,
            snapshot_id,
            keep=config.keep,
            extra={t.SNAPSHOT_META: meta, t.CHECK_RESULTS: checks},
        )

    kept = [s.snapshot_id for s in list_snapshots(target)]
    if missing:
        context.log.warning(f"published without {len(missing)} tables: {', '.join(missing)}")
    table_md = "\n".join(f"| {name} | {row_counts[name]:,} |" for name in copied)
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": dg.MetadataValue.text(snapshot.snapshot_id),
            "path": dg.MetadataValue.path(str(snapshot.path)),
            "size_mb": dg.MetadataValue.float(round(snapshot.path.stat().st_size / 2**20, 2)),
            "tables": dg.MetadataValue.int(len(copied)),
            "missing_tables": dg.MetadataValue.text(", ".join(missing) or "none"),
            "data_range": dg.MetadataValue.text(f"{data_start} .. {data_end}"),
            "checks_recorded": dg.MetadataValue.int(checks.height),
            "checks_failed_non_blocking": dg.MetadataValue.int(
                checks.filter(~pl.col("passed")).height
            ),
            "snapshots_kept": dg.MetadataValue.text(", ".join(kept)),
            "contents": dg.MetadataValue.md("| table | rows |\n|---|---|\n" + table_md),
        }
    )
