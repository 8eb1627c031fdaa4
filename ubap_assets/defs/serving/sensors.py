"""After a failed run, publish what did succeed.

With the in-process executor a failed step skips everything downstream of it, serving_snapshot
included (it depends on every serving table). This sensor sees the failed run and launches
`publish_job`, which runs serving_snapshot alone: it serves every table that is fine and marks
the others "not refreshed" with the failure as the reason (see status.py).
"""

import dagster as dg

from ubap_assets.defs.serving.assets import SERVING_SNAPSHOT
from ubap_assets.defs.serving.status import run_events

publish_job = dg.define_asset_job(
    "publish_job",
    selection=[SERVING_SNAPSHOT],
    description="Publish a serving snapshot of what the warehouse holds now (no recomputation).",
)

PUBLISHES_AFTER_TAG = "ubap/publishes_after"
_WILL_RETRY_TAG = "dagster/will_retry"


def _planned_and_built(instance: dg.DagsterInstance, run_id: str) -> tuple[bool, bool]:
    """Whether the run planned serving_snapshot, and whether it materialized it."""
    records = run_events(
        instance,
        run_id,
        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
    )
    planned = built = False
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key != dg.AssetKey(SERVING_SNAPSHOT):
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned = True
        else:
            built = True
    return planned, built


# Runs that end with a publish: when one of them is already waiting or running, a failed run
# needs no publish of its own (the later run serves fresher tables, or fails and publishes).
_PUBLISHING_JOBS = {"refresh_job", "nightly_job", "ingest_refresh_job", "publish_job"}
_PENDING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.run_failure_sensor(
    name="publish_after_failure",
    request_job=publish_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="When a run that was to publish a snapshot fails, publish what succeeded: "
    "serving_snapshot alone, tables the failure kept stale marked 'not refreshed'.",
)
def publish_after_failure(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    if run.job_name == publish_job.name:
        return dg.SkipReason(f"run {run.run_id} was itself a publish; its error says why")
    if run.tags.get(_WILL_RETRY_TAG) == "true":
        return dg.SkipReason(f"run {run.run_id} will be retried; its retry publishes")
    pending = context.instance.get_runs(filters=dg.RunsFilter(statuses=_PENDING), limit=20)
    next_publisher = next((r for r in pending if r.job_name in _PUBLISHING_JOBS), None)
    if next_publisher is not None:  # one publish after a burst of failures, not one each
        return dg.SkipReason(
            f"run {next_publisher.run_id} ({next_publisher.job_name}, "
            f"{next_publisher.status.value}) publishes next"
        )
    planned, built = _planned_and_built(context.instance, run.run_id)
    if not planned:
        return dg.SkipReason(f"run {run.run_id} was not going to publish a snapshot")
    if built:
        return dg.SkipReason(f"run {run.run_id} published its snapshot before it failed")
    return dg.RunRequest(
        run_key=f"publish-after-{run.run_id}",
        tags={PUBLISHES_AFTER_TAG: run.run_id},
    )
