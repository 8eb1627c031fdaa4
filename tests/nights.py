"""The run the schedules request for a night, executed in process (the incremental test and
``bench/bench_real_incremental.py``). No conftest import: a bench can use it on its own data."""

from datetime import datetime, time, timedelta

import dagster as dg


def run_night(definitions, instance, day) -> tuple[str, dict[str, float]]:
    """The scheduled run of the night after ``day`` (whichever schedule requests it): its job
    and the seconds of each step."""
    when = datetime.combine(day + timedelta(days=1), time(2, 0))
    for name in ("nightly_refresh", "nightly_retrain"):
        context = dg.build_schedule_context(
            scheduled_execution_time=when,
            instance=instance,
            repository_def=definitions.get_repository_def(),
        )
        schedule = definitions.resolve_schedule_def(name)
        requests = schedule.evaluate_tick(context).run_requests
        if requests:
            (request,) = requests
            result = definitions.resolve_job_def(schedule.job_name).execute_in_process(
                instance=instance, tags=request.tags, raise_on_error=False
            )
            failed = [e.step_key for e in result.get_step_failure_events()]
            assert result.success, f"night after {day}: {schedule.job_name} failed at {failed}"
            steps = {
                event.step_key: event.event_specific_data.duration_ms / 1000
                for event in result.all_events
                if event.event_type_value == "STEP_SUCCESS"
            }
            return schedule.job_name, steps
    raise AssertionError(f"no schedule requested a run for the night after {day}")
