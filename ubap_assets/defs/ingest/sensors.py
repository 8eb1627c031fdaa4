"""Watch the event inbox: a new or changed file refreshes the day partitions it touches.

The sensor runs only when the source is files (``UBAP_SOURCE`` = ``inbox`` or a folder/glob);
with the synthetic source it is stopped by default (it can still be switched on in the UI).
It watches the folder ``UBAP_SOURCE`` names, or the inbox (``UBAP_INBOX_DIR``, data/inbox) when
the source is synthetic. Its cursor remembers each file's mtime, size and first/last day, so a
removed file also refreshes the days it used to cover.
"""

import hashlib
import json
import os
from datetime import date, timedelta

import dagster as dg

from ubap_assets.core.ingest import (
    IngestError,
    SourceSettingsError,
    file_days,
    inbox_state,
    source_settings,
)
from ubap_assets.core.ingest.inbox import diff_inbox
from ubap_assets.defs.events.partitions import daily_partitions
from ubap_assets.lib.run_partitions import RANGE_END_TAG, RANGE_START_TAG
from ubap_assets.warehouse.paths import inbox_dir

# Set by `make up` / `make materialize` for the `dagster dev` they start. They queue the whole
# history as soon as the webserver answers, and the daemon's first sensor tick can come before
# that run exists: without this, that tick queued a second ingest of every file.
FULL_REFRESH_PENDING_ENV = "UBAP_FULL_REFRESH_PENDING"

# A file must be this old before it is read, so a half-copied upload waits for the next tick.
SETTLE_SECONDS = 5

# The events partitions, the unpartitioned tables of the same source, and all downstream.
ingest_refresh_job = dg.define_asset_job(
    "ingest_refresh_job",
    selection=dg.AssetSelection.keys(
        "events", "users", "pages", "user_personas", "injected_anomalies", "event_rejects"
    ).downstream(),
    partitions_def=daily_partitions,
    description="Re-ingest the day partitions new event files touch, then refresh downstream.",
)


def _default_status() -> dg.DefaultSensorStatus:
    try:
        files = source_settings().is_files
    except SourceSettingsError:
        files = False  # a bad setting surfaces as a clear error when the sensor is switched on
    return dg.DefaultSensorStatus.RUNNING if files else dg.DefaultSensorStatus.STOPPED


_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def full_refresh_covers_the_inbox(context: dg.SensorEvaluationContext) -> str | None:
    """Why the files already in the inbox need no run of their own on the sensor's first tick:
    `make up` / `make materialize` queued the whole history, or the events are already stored.
    None when nothing covers them (then the first tick ingests them)."""
    if os.environ.get(FULL_REFRESH_PENDING_ENV):
        return "the command that started this dagster dev queues the whole history"
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # a context built without an instance
        return None
    queued = instance.get_runs(
        filters=dg.RunsFilter(job_name="refresh_job", statuses=_IN_FLIGHT), limit=1
    )
    if queued:
        return f"run {queued[0].run_id} is ingesting the whole history"
    if instance.get_latest_materialization_event(dg.AssetKey("events")) is not None:
        return "the events are already materialized"
    return None


def plan_runs(
    changed_days: set[date], valid_keys: set[str], change_id: str
) -> tuple[list[dg.RunRequest], list[str]]:
    """One run over the valid day partitions from the first to the last changed day (every run
    refreshes the whole graph downstream, so one run per change beats one per gap-free range:
    a log with closed days would otherwise queue dozens); days outside are returned apart."""
    keys = sorted(d for d in changed_days if d.isoformat() in valid_keys)
    outside = sorted(d.isoformat() for d in changed_days if d.isoformat() not in valid_keys)
    if not keys:
        return [], outside
    # A day's sessions read the day before and after it (a session crossing midnight): the run
    # widens to the neighbouring partitions that exist.
    first, last = keys[0], keys[-1]
    if (first - timedelta(days=1)).isoformat() in valid_keys:
        first -= timedelta(days=1)
    if (last + timedelta(days=1)).isoformat() in valid_keys:
        last += timedelta(days=1)
    run_key = f"inbox-{first}-{last}-{change_id}"
    if first == last:
        return [dg.RunRequest(run_key=run_key, partition_key=first.isoformat())], outside
    tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
    return [dg.RunRequest(run_key=run_key, tags=tags)], outside


@dg.sensor(
    job=ingest_refresh_job,
    minimum_interval_seconds=30,
    default_status=_default_status(),
    description=(
        "Watches the event inbox (UBAP_SOURCE folder, or UBAP_INBOX_DIR): a new or changed file "
        "re-ingests the days it touches and refreshes everything downstream."
    ),
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    settings = source_settings()
    folder = settings.path if settings.is_files and settings.path else str(inbox_dir())
    # cursor: path -> [fingerprint, first day, last day]
    previous: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    current = inbox_state(folder, min_age_s=SETTLE_SECONDS)
    change = diff_inbox({p: v[0] for p, v in previous.items()}, current)
    if not change.changed and not change.removed:
        return dg.SkipReason(f"no new, changed or removed event files in {folder}")

    cursor = {p: v for p, v in previous.items() if p in current}
    days: set[date] = set()
    for path in change.changed:
        try:
            touched = file_days(path, settings.mapping)
        except IngestError as err:
            context.log.warning(f"cannot read the days of {path}: {err}")
            touched = []
        days.update(touched)
        first, last = (touched[0].isoformat(), touched[-1].isoformat()) if touched else ("", "")
        cursor[path] = [current[path], first, last]
    for path in change.removed:
        _, first, last = previous[path]
        if first:
            start, end = date.fromisoformat(first), date.fromisoformat(last)
            days.update(start + timedelta(days=i) for i in range((end - start).days + 1))

    new_cursor = json.dumps(cursor, sort_keys=True)
    covered = full_refresh_covers_the_inbox(context) if not previous else None
    if covered:  # the first tick: remember what is there; changes from now on trigger runs
        return dg.SensorResult(
            cursor=new_cursor,
            skip_reason=f"{len(current)} file(s) in {folder} recorded, no run: {covered}",
        )
    fingerprint = json.dumps([change.changed, [current[p] for p in change.changed], change.removed])
    change_id = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]
    valid = set(daily_partitions.get_partition_keys())
    requests, outside = plan_runs(days, valid, change_id)
    if outside:
        context.log.warning(
            f"{len(outside)} day(s) of the new files lie outside the event partitions "
            f"({outside[0]} .. {outside[-1]}); set UBAP_START_DATE to cover them"
        )
    context.log.info(
        f"{len(change.changed)} new/changed and {len(change.removed)} removed file(s) in {folder}: "
        f"{len(requests)} run(s) over {len(days) - len(outside)} day(s)"
    )
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
