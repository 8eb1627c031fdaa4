"""The jobs and the nightly schedule that keep every asset fresh."""

from datetime import timedelta

import dagster as dg

from ubap_assets.defs.events.partitions import daily_partitions
from ubap_assets.settings import DEFAULT_NIGHTLY_CRON, current_settings

# Everything: a day partition of events (or a range of them) and the whole graph downstream.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Materialize event partitions and refresh every downstream asset.",
)


# Hand-built rather than dg.build_schedule_from_partitioned_job: the builder requests the
# partitions definition's last key, so once a historic log's partitions end it would request
# that last day every night (and before the first day it skips with a generic message), where
# this names the missing day and the range the events cover.
def _nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    if not daily_partitions.has_partition_key(yesterday):
        first, last = (
            daily_partitions.get_first_partition_key(),
            daily_partitions.get_last_partition_key(),
        )
        return dg.SkipReason(
            f"no event partition for {yesterday}: the events cover {first} .. {last} (a historic "
            "log ends at its last day; reload the code location when newer files arrive)"
        )
    return dg.RunRequest(run_key=f"nightly-{yesterday}", partition_key=yesterday)


def nightly_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    """The nightly refresh on ``UBAP_NIGHTLY_CRON``. An invalid cron does not break the code
    location: the schedule falls back to the default time, stopped, and says why (logged too)."""
    cron = current_settings().nightly_cron if cron is None else cron
    description = "Every night: yesterday's events, then everything downstream (UBAP_NIGHTLY_CRON)."
    status = dg.DefaultScheduleStatus.RUNNING
    try:
        dg.ScheduleDefinition(name="cron_probe", job=refresh_job, cron_schedule=cron)
    except dg.DagsterInvalidDefinitionError:
        problem = (
            f"UBAP_NIGHTLY_CRON={cron!r} is not a cron expression: use five fields such as "
            f"'{DEFAULT_NIGHTLY_CRON}' (02:00 UTC), or unset it; the nightly schedule is stopped"
        )
        dg.get_dagster_logger().error(f"ubap configuration error: {problem}")
        cron, status, description = DEFAULT_NIGHTLY_CRON, dg.DefaultScheduleStatus.STOPPED, problem
    return dg.schedule(
        job=refresh_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=status,
        description=description,
        name="nightly_refresh",
    )(_nightly)


nightly_refresh = nightly_schedule()
