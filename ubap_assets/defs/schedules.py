"""The jobs and the nightly schedule that keep every asset fresh."""

import os
from datetime import timedelta

import dagster as dg

from ubap_assets.defs.events.partitions import daily_partitions

NIGHTLY_CRON = os.environ.get("UBAP_NIGHTLY_CRON", "0 2 * * *")

# Everything: a day partition of events (or a range of them) and the whole graph downstream.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Materialize event partitions and refresh every downstream asset.",
)


@dg.schedule(
    job=refresh_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night: yesterday's events, then everything downstream (UBAP_NIGHTLY_CRON).",
)
def nightly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"nightly-{yesterday}", partition_key=yesterday)
