"""The jobs and the two nightly schedules that keep every asset fresh.

Each night refreshes yesterday's partition and the day before it (a session that crossed
midnight is complete once the next day is in), then everything downstream. Most nights that is
``nightly_job``: the models and the recommender's tuning are left out, and the night only scores
with them. On the first night of a training period (``UBAP_RETRAIN_EVERY_DAYS``, weekly by
default; see core/cadence.py) ``nightly_retrain`` runs ``refresh_job`` instead, which retrains
them on the data up to the new boundary. Both schedules tick every night; each says why it
skipped, so the UI shows which one ran and when the next retraining is.
"""

from datetime import date, datetime, time, timedelta

import dagster as dg

from ubap_assets.core.cadence import starts_period, training_end
from ubap_assets.defs.events.partitions import daily_partitions
from ubap_assets.lib.run_partitions import RANGE_END_TAG, RANGE_START_TAG
from ubap_assets.settings import DEFAULT_NIGHTLY_CRON, current_settings
from ubap_assets.warehouse import tables as t

# What retrains on the cadence: the models (one multi-asset) and the recommender's tuning.
RETRAINED = dg.AssetSelection.assets(
    t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES, t.REC_EVALUATION
)

# Everything: a day partition of events (or a range of them) and the whole graph downstream.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Materialize event partitions and refresh every downstream asset, retraining "
    "the models and the recommender's tuning.",
)

# Every night but the first of a training period: the same graph without retraining.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.all() - RETRAINED,
    partitions_def=daily_partitions,
    description="Materialize event partitions and refresh every downstream asset, scoring with "
    "the models and recommender knobs in service (retrained by refresh_job on the cadence).",
)


def nightly_range(day: date) -> dict[str, str]:
    """Run tags of the night after ``day``: ``day`` and the day before it (when it exists)."""
    first = max(
        day - timedelta(days=1), date.fromisoformat(daily_partitions.get_first_partition_key())
    )
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: day.isoformat()}


def retrains_after(day: date, every_days: int) -> bool:
    """Whether the night after ``day`` retrains: ``day`` is the first of a training period, so
    the day before the new boundary is complete (its sessions that crossed midnight are in)."""
    return starts_period(day, every_days)


def next_retraining(day: date, every_days: int) -> date:
    """The last day of data of the next retraining night after the one following ``day``."""
    return training_end(datetime.combine(day, time(0)) + timedelta(days=1), every_days).date() + (
        timedelta(days=every_days)
    )


def _yesterday(context: dg.ScheduleEvaluationContext) -> tuple[date | None, dg.SkipReason | None]:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    if daily_partitions.has_partition_key(yesterday.isoformat()):
        return yesterday, None
    first, last = (
        daily_partitions.get_first_partition_key(),
        daily_partitions.get_last_partition_key(),
    )
    return None, dg.SkipReason(
        f"no event partition for {yesterday}: the events cover {first} .. {last} (a historic "
        "log ends at its last day; reload the code location when newer files arrive)"
    )


def _never_trained(context: dg.ScheduleEvaluationContext) -> bool:
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # a context built without an instance
        return False
    return instance.get_latest_materialization_event(dg.AssetKey(t.MODEL_CARDS)) is None


def _request(day: date, kind: str) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"{kind}-{day.isoformat()}", tags=nightly_range(day))


# Hand-built rather than dg.build_schedule_from_partitioned_job: the builder requests the
# partitions definition's last key, so once a historic log's partitions end it would request
# that last day every night (and before the first day it skips with a generic message), where
# this names the missing day and the range the events cover.
def _nightly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    day, skip = _yesterday(context)
    if skip:
        return skip
    every = current_settings().retrain_every_days
    if retrains_after(day, every) or _never_trained(context):
        return dg.SkipReason(
            f"{day} starts a training period: nightly_retrain refreshes the graph and retrains"
        )
    return _request(day, "nightly")


def _retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    day, skip = _yesterday(context)
    if skip:
        return skip
    every = current_settings().retrain_every_days
    if retrains_after(day, every) or _never_trained(context):
        return _request(day, "retrain")
    return dg.SkipReason(
        f"no retraining after {day}: every {every} days (UBAP_RETRAIN_EVERY_DAYS), next after "
        f"{next_retraining(day, every)}; nightly_refresh scores with the models in service"
    )


def _valid_cron(cron: str) -> tuple[str, dg.DefaultScheduleStatus, str | None]:
    """The cron to use, the schedules' default status and the problem with the setting."""
    try:
        dg.ScheduleDefinition(name="cron_probe", job=refresh_job, cron_schedule=cron)
    except dg.DagsterInvalidDefinitionError:
        problem = (
            f"UBAP_NIGHTLY_CRON={cron!r} is not a cron expression: use five fields such as "
            f"'{DEFAULT_NIGHTLY_CRON}' (02:00 UTC), or unset it; the nightly schedules are stopped"
        )
        dg.get_dagster_logger().error(f"ubap configuration error: {problem}")
        return DEFAULT_NIGHTLY_CRON, dg.DefaultScheduleStatus.STOPPED, problem
    return cron, dg.DefaultScheduleStatus.RUNNING, None


def nightly_schedules(cron: str | None = None) -> tuple[dg.ScheduleDefinition, ...]:
    """``nightly_refresh`` and ``nightly_retrain`` on ``UBAP_NIGHTLY_CRON``. An invalid cron
    does not break the code location: both fall back to the default time, stopped, and say why
    (logged too)."""
    cron, status, problem = _valid_cron(current_settings().nightly_cron if cron is None else cron)
    nightly = dg.schedule(
        job=nightly_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=status,
        description=problem
        or "Every night but the first of a training period: yesterday and the day before, then "
        "everything downstream, scoring with the models in service (UBAP_NIGHTLY_CRON).",
        name="nightly_refresh",
    )(_nightly)
    retrain = dg.schedule(
        job=refresh_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=status,
        description=problem
        or "The first night of each training period (UBAP_RETRAIN_EVERY_DAYS, weekly by default): "
        "the nightly refresh plus retraining the models and the recommender's tuning.",
        name="nightly_retrain",
    )(_retrain)
    return nightly, retrain


nightly_refresh, nightly_retrain = nightly_schedules()
