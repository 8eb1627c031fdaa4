"""What a snapshot is about to serve: the latest completed checks and, per table, whether the
run refreshed it — worked out from the Dagster instance, so a publish-only run after a failed
run can say which tables are stale and why."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ubap_assets.lib.warehouse_io import NOT_REFRESHED
from ubap_assets.warehouse.snapshots import CHECK_RESULTS_SCHEMA, TABLE_STATUS_SCHEMA

_HISTORY_PAGE = 25
_MAX_REASON = 400


def _naive(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def latest_completed_evaluation(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey
) -> tuple[dg.AssetCheckEvaluation | None, object] | None:
    """The newest evaluation of a check that ran, with its record; the evaluation is None where
    the check's op ran to success without a result: the check said it was SKIPPED.

    A run that was queued, failed or was killed before a check ran leaves a *planned*
    evaluation (no `passed`) as the check's latest record; those never count.
    """
    cursor = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=_HISTORY_PAGE, cursor=cursor
        )
        for record in records:
            if isinstance(record.evaluation, dg.AssetCheckEvaluation):
                return record.evaluation, record
            if _skipped(instance, record.run_id, key.name):
                return None, record
        if len(records) < _HISTORY_PAGE:
            return None
        cursor = records[-1].id


def _skipped(instance: dg.DagsterInstance, run_id: str, step_key: str) -> bool:
    """Whether the check op ``step_key`` (a multi_asset_check named after its one check) ran to
    success in ``run_id`` without yielding its result."""
    stats = instance.get_run_step_stats(run_id, step_keys=[step_key])
    return any(getattr(s.status, "value", None) == "SUCCESS" for s in stats)


def _skip_reasons(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the warning its check logged when it skipped (``lib.checks.skip``), read in
    one pass over the run's logs."""
    reasons: dict[str, str] = {}
    for entry in instance.all_logs(run_id):
        message = entry.user_message or ""
        if entry.dagster_event is None and entry.step_key and "skipped" in message:
            reasons.setdefault(entry.step_key, message[:_MAX_REASON])
    return reasons


def check_results(instance: dg.DagsterInstance, graph) -> pl.DataFrame:
    """The latest evaluation of every asset check in ``graph``, one row per check: passed,
    failed, or skipped (with the reason the check gave) where the data could not be scored."""
    rows = []
    skip_reasons: dict[str, dict[str, str]] = {}  # run id -> step key -> reason
    keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    # Every check's latest record in one query; only those whose latest did not evaluate
    # (skipped, or planned by a run that never got to it) page back through their history.
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    for key in keys:
        record = latest.get(key)
        if record is not None and isinstance(record.evaluation, dg.AssetCheckEvaluation):
            found = record.evaluation, record
        else:
            found = latest_completed_evaluation(instance, key)
        if found is None:
            continue
        evaluation, record = found
        spec = graph.get_check_spec(key)
        if evaluation is None:
            status, passed, severity = "skipped", None, None
            blocking = bool(spec.blocking)
            if record.run_id not in skip_reasons:
                skip_reasons[record.run_id] = _skip_reasons(instance, record.run_id)
            description = skip_reasons[record.run_id].get(
                key.name, "skipped: the check had nothing to score"
            )
        else:
            passed = bool(evaluation.passed)
            status, severity = ("passed" if passed else "failed"), evaluation.severity.value
            blocking = bool(evaluation.blocking or spec.blocking)
            description = evaluation.description or spec.description or ""
        rows.append(
            {
                "asset_key": key.asset_key.to_user_string(),
                "check_name": key.name,
                "status": status,
                "passed": passed,
                "severity": severity,
                "blocking": blocking,
                "description": description,
                "evaluated_at": _naive(record.create_timestamp),
                "run_id": record.run_id,
            }
        )
    return pl.DataFrame(rows, schema=CHECK_RESULTS_SCHEMA)


def failed_blocking(checks: pl.DataFrame) -> dict[str, str]:
    """Asset -> reason, for assets whose latest completed blocking check failed with ERROR
    severity (Dagster's own rule: only those stop downstream)."""
    failed = checks.filter(
        pl.col("blocking") & (pl.col("status") == "failed") & (pl.col("severity") == "ERROR")
    )
    reasons: dict[str, list[str]] = {}
    for row in failed.iter_rows(named=True):
        reasons.setdefault(row["asset_key"], []).append(row["check_name"])
    return {
        asset: f"blocking check {', '.join(names)} failed; serving the previous data"
        for asset, names in reasons.items()
    }


def _short_error(error) -> str:
    """The user's own message out of a serialized Dagster step error."""
    while error.cause is not None and "DagsterExecutionStepExecutionError" in error.message:
        error = error.cause
    line = (error.message or "").strip().splitlines()[0] if error.message else ""
    line = re.sub(r"^dagster\._core\.definitions\.events\.Failure: ", "", line)
    line = re.sub(r"^(?:[a-z_][\w]*\.)+(?=\w+: )", "", line)  # module path of the exception
    return line[:_MAX_REASON]


@dataclass(frozen=True)
class _RunOutcome:
    run_id: str
    status: str
    finished: bool
    failures: dict[str, str]  # step key -> short error
    steps: dict[str, str]  # asset key string -> step key that plans it


def run_events(
    instance: dg.DagsterInstance, run_id: str, *event_types: dg.DagsterEventType
) -> list[dg.EventLogRecord]:
    """A run's event records of the given types, oldest first."""
    return list(instance.get_records_for_run(run_id, of_type=set(event_types)).records)


def _run_outcome(instance: dg.DagsterInstance, run_id: str) -> _RunOutcome:
    run = instance.get_run_by_id(run_id)
    events = run_events(
        instance,
        run_id,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    )
    failures: dict[str, str] = {}
    steps: dict[str, str] = {}
    for record in events:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failures.setdefault(event.step_key, _short_error(event.step_failure_data.error))
        elif event.asset_key is not None and event.step_key:
            steps[event.asset_key.to_user_string()] = event.step_key
    return _RunOutcome(
        run_id=run_id,
        status=run.status.value if run else "UNKNOWN",
        finished=run.is_finished if run else True,
        failures=failures,
        steps=steps,
    )


def _reason_not_materialized(outcome: _RunOutcome, table: str) -> str:
    run = outcome.run_id[:8]
    step = outcome.steps.get(table)
    if step in outcome.failures:
        return f"{step} failed in run {run}: {outcome.failures[step]}"
    if outcome.failures:
        first, message = next(iter(outcome.failures.items()))
        return f"not built in run {run}, where {first} failed: {message}"[:_MAX_REASON]
    return f"not built in run {run} ({outcome.status.lower()})"


def latest_materializations(
    instance: dg.DagsterInstance, tables: Iterable[str]
) -> dict[str, dg.EventLogRecord | None]:
    """Each table's newest materialization (None where it has none), read in one query."""
    tables = list(tables)
    latest: dict[str, dg.EventLogRecord | None] = dict.fromkeys(tables)
    for record in instance.get_asset_records([dg.AssetKey(table) for table in tables]):
        entry = record.asset_entry
        name = entry.asset_key.to_user_string()
        if name in latest:
            latest[name] = entry.last_materialization_record
    return latest


def table_status(
    instance: dg.DagsterInstance,
    tables: Iterable[str],
    present: set[str],
    current_run_id: str,
    blocked: dict[str, str] | None = None,
    carried: dict[str, datetime | None] | None = None,
    latest: dict[str, dg.EventLogRecord | None] | None = None,
) -> pl.DataFrame:
    """One row per served table: refreshed, or the reason the served data is older.

    A table is not refreshed when: a blocking check failed on it (``blocked``: the previous
    snapshot's copy is served, ``carried`` gives when that was materialized); its asset kept the
    previous table on a known data problem (``ubap/not_refreshed`` metadata); a finished run
    planned it after its latest materialization but did not build it (that run's step failure
    is the reason); or it is not in the warehouse at all. A table this run built is refreshed
    whatever another run planned since. ``latest``: ``latest_materializations`` of ``tables``,
    read here when not given.
    """
    blocked, carried = blocked or {}, carried or {}
    tables = list(tables)
    latest = latest_materializations(instance, tables) if latest is None else latest
    outcomes: dict[str, _RunOutcome] = {}
    rows = []
    for table in tables:
        key = dg.AssetKey(table)
        mat = latest.get(table)
        materialized_at = _naive(mat.timestamp) if mat else None
        reason = None
        if table in blocked:
            reason = blocked[table]
            materialized_at = carried.get(table)
            if table not in carried:
                reason = f"{reason} (none published before: left out)"
        elif mat is not None and NOT_REFRESHED in mat.asset_materialization.metadata:
            reason = str(mat.asset_materialization.metadata[NOT_REFRESHED].value)
            materialized_at = _previous_write(instance, key, mat)
        elif mat is not None and mat.run_id == current_run_id:
            pass  # built by this run (most tables of a night): no planned run to look up
        else:
            planned = instance.get_latest_planned_materialization_info(key)
            if planned is not None and (mat is None or planned.storage_id > mat.storage_id):
                if planned.run_id not in outcomes:
                    outcomes[planned.run_id] = _run_outcome(instance, planned.run_id)
                outcome = outcomes[planned.run_id]
                if outcome.finished or planned.run_id == current_run_id:
                    reason = _reason_not_materialized(outcome, table)
        if reason is None and table not in present and table not in carried:
            reason = "never built: not in the warehouse"
        rows.append(
            {
                "table_name": table,
                "refreshed": reason is None,
                "reason": reason,
                "materialized_at": materialized_at,
            }
        )
    return pl.DataFrame(rows, schema=TABLE_STATUS_SCHEMA)


def _previous_write(instance: dg.DagsterInstance, key: dg.AssetKey, kept) -> datetime | None:
    """When the data a degraded materialization kept was written: the newest materialization
    before it that did write."""
    cursor = None
    while True:
        result = instance.fetch_materializations(key, limit=_HISTORY_PAGE, cursor=cursor)
        for record in result.records:
            if record.storage_id < kept.storage_id and (
                NOT_REFRESHED not in record.asset_materialization.metadata
            ):
                return _naive(record.timestamp)
        if not result.has_more:
            return None
        cursor = result.cursor
