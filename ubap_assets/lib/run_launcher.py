"""The instance's run launcher: Dagster's default one, plus a health check of the run worker.

Dagster's ``DefaultRunLauncher`` starts each run in a worker process of the code server, but it
cannot tell the run-monitoring daemon whether that worker is still alive. The code server notices
a worker that dies under it; nobody notices a run whose worker died together with the code server
(``dagster dev`` killed, the machine rebooted, the out-of-memory killer): the run stays STARTED
forever and, with one run allowed at a time, the queue never moves.

``MonitoredRunLauncher`` answers the daemon's health check from the process table: every worker
records its pid in the run's event log when it starts ("Started process for run (pid: N)", and
the in-process executor's "Executing steps in process (pid: N)"); a STARTED run whose process is
gone, a zombie, or a newer process that reused the pid is reported FAILED by the daemon, with an
engine event that says so, and the next queued run starts. ``dagster.yaml`` selects it and sets
how often the daemon checks (``run_monitoring.poll_interval_seconds``).

The instance is local (SQLite under ``UBAP_DATA_DIR``), so workers run on the daemon's machine;
a run launched through a code server on another host is not judged.
"""

import json

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
# A worker writes its pid event right after it starts; allow for clock rounding.
PID_EVENT_SLACK_S = 2.0


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the run's latest worker process and when it announced itself, if recorded."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = getattr(event.event_specific_data, "metadata", None) or {}
        pid = metadata.get("pid")
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def process_state(pid: int, announced_at: float) -> CheckRunHealthResult:
    """RUNNING if ``pid`` is the process that announced itself at ``announced_at``, else FAILED."""
    try:
        process = psutil.Process(pid)
        created = process.create_time()
        status = process.status()
    except psutil.NoSuchProcess:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")
    except psutil.AccessDenied:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} exists (not ours)")
    if status == psutil.STATUS_ZOMBIE:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} has exited")
    if created > announced_at + PID_EVENT_SLACK_S:
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} is gone (the pid now belongs to a newer process)",
        )
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {pid} is alive")


class MonitoredRunLauncher(dg.DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers the run-monitoring daemon can health-check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        host = _grpc_host(run.tags.get(GRPC_INFO_TAG))
        if host not in LOCAL_HOSTS:
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"run worker on {host}: not checked from this machine"
            )
        found = worker_pid(self._instance, run.run_id)
        if found is None:
            # A started run has always announced its pid; without one there is nothing to judge.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded")
        return process_state(*found)


def _grpc_host(grpc_info: str | None) -> str:
    """The code server's host from the run's gRPC tag ("" for a socket or an in-process run)."""
    return str(json.loads(grpc_info).get("host") or "") if grpc_info else ""
