"""``make up``'s run goes through the instance, and a killed run fails so the queue moves on.

The slow tests run a real ``dagster dev`` (webserver + daemon, as ``make serve`` starts it) on a
free port, over a private DAGSTER_HOME holding the project's dagster.yaml and a small synthetic
world (300 users x 42 days, the hashing embedder).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import Future
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.launcher import WorkerStatus

from tests.conftest import TEST_DAYS, TEST_START
from ubap_assets import materialize
from ubap_assets.launch import (
    SUBMISSION_TAG,
    graphql,
    submit_refresh_run,
    terminate_run,
    wait_for_location,
)
from ubap_assets.lib.run_launcher import process_state, worker_pid

ROOT = Path(__file__).resolve().parents[1]
FIRST = TEST_START.isoformat()
LAST = (TEST_START + timedelta(days=TEST_DAYS - 1)).isoformat()


def test_worker_health_from_the_process_table():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        announced = psutil.Process(child.pid).create_time() + 0.5
        assert process_state(child.pid, announced).status == WorkerStatus.RUNNING
        # The pid now belongs to a process started after the worker announced itself.
        reused = process_state(child.pid, announced - 60)
        assert reused.status == WorkerStatus.FAILED and "newer process" in reused.msg
        child.kill()
        _wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10, "exit")
        zombie = process_state(child.pid, announced)  # killed, not yet reaped
        assert zombie.status == WorkerStatus.FAILED and "has exited" in zombie.msg
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid, announced).status == WorkerStatus.FAILED  # reaped: gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """``dagster dev`` in its own process group, so a test can kill all of it at once."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
                + ["-h", "127.0.0.1", "-p", port],
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_location(self.url, timeout_s=240)

    def kill(self) -> None:
        """kill -9 the whole of it: webserver, daemon, code server and run workers."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    data = tmp_path_factory.mktemp("launch")
    home = data / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "UBAP_DATA_DIR": str(data),
        "UBAP_USERS": "300",
        "UBAP_HISTORY_DAYS": str(TEST_DAYS),
        "UBAP_START_DATE": FIRST,
        "UBAP_EMBEDDER": "hashing",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        dev = DagsterDev(dict(os.environ), home / "dagster-dev.log")
        dev.start()
        try:
            yield dev
        finally:
            dev.kill()


def run_origin_location(url: str, run_id: str) -> str | None:
    """What the UI sees: a run with a repository origin can be re-executed from the UI."""
    query = (
        f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ '
        "repositoryOrigin { repositoryLocationName } } } }"
    )
    origin = graphql(url, query)["runOrError"]["repositoryOrigin"]
    return origin["repositoryLocationName"] if origin else None


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_make_up_names_invalid_run_config(dagster_dev, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ops:\n  anomaly_history:\n    config:\n      threshold: high\n")
    assert materialize.main(["--url", dagster_dev.url, "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "RunConfigValidationInvalid" in err and "threshold" in err


class LossyProxy:
    """Forwards GraphQL to the webserver, but the next run submission's request (``"request"``)
    or its answer (``"answer"``) is lost: the connection closes with nothing sent back, as when
    the webserver is killed mid-request."""

    def __init__(self, upstream: str):
        self.drops: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                drop = None
                if b"launchPipelineExecution" in body and proxy.drops:
                    drop = proxy.drops.pop(0)
                if drop != "request":
                    request = urllib.request.Request(
                        f"{upstream}{self.path}",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, answer = response.status, response.read()
                if drop is not None:
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_submission_whose_request_or_answer_is_lost_is_queued_exactly_once(dagster_dev):
    proxy = LossyProxy(dagster_dev.url)
    try:
        with dg.DagsterInstance.get() as instance:
            for lost in ("answer", "request"):
                proxy.drops = [lost]
                run_id = submit_refresh_run(proxy.url, FIRST, LAST, trigger="test", wait_s=60)
                assert proxy.drops == []  # the submission did go through the lossy proxy
                run = instance.get_run_by_id(run_id)
                submission = dg.RunsFilter(tags={SUBMISSION_TAG: run.tags[SUBMISSION_TAG]})
                assert [r.run_id for r in instance.get_runs(filters=submission)] == [run_id], lost
                terminate_run(dagster_dev.url, run_id)  # the graph itself is not under test here
                _wait_for(lambda r=run_id: instance.get_run_by_id(r).is_finished, 120, "the cancel")
    finally:
        proxy.server.shutdown()


def _in_background(function, *args) -> Future:
    """``function(*args)`` in a daemon thread: a failing test does not wait for it to end."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as err:  # handed to the test through the future
            future.set_exception(err)

    threading.Thread(target=target, daemon=True).start()
    return future


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_killed_runs_fail_and_make_up_run_then_succeeds(dagster_dev, tmp_path, capsys):
    """kill -9 of a run worker: its run fails within seconds and the queue moves on. kill -9 of
    everything mid-run (a crash, a reboot): once Dagster is back the run is marked FAILED within a
    poll interval and ``make up``'s queued run goes ahead and succeeds."""
    url = dagster_dev.url
    no_retry = {"dagster/max_retries": "0"}  # a retry would only queue up behind the next run
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  anomaly_history:\n    config:\n      threshold: 3.5\n")
    args = ["--url", url, "--config", str(config), "--first-day", FIRST, "--last-day", LAST]

    def first_step_done(run_id: str) -> bool:
        success = dg.DagsterEventType.STEP_SUCCESS
        return bool(instance.get_records_for_run(run_id, of_type=success, limit=1).records)

    with dg.DagsterInstance.get() as instance:
        worker_killed = submit_refresh_run(url, FIRST, LAST, trigger="test", extra_tags=no_retry)
        killed = submit_refresh_run(url, FIRST, LAST, trigger="test", extra_tags=no_retry)
        _wait_for(lambda: first_step_done(worker_killed), 120, "the first run's first step")
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.QUEUED

        pid, _ = worker_pid(instance, worker_killed)
        os.kill(pid, signal.SIGKILL)  # the worker alone: its code server reports it
        _wait_for(lambda: instance.get_run_by_id(worker_killed).is_finished, 60, "the run")
        assert instance.get_run_by_id(worker_killed).status == dg.DagsterRunStatus.FAILURE
        _wait_for(lambda: first_step_done(killed), 120, "the next run's first step")

        follower = _in_background(materialize.main, args)  # make up: submit, then follow
        submitted = dg.RunsFilter(
            tags={"ubap/trigger": "make up"},
            statuses=[s for s in dg.DagsterRunStatus if s != dg.DagsterRunStatus.NOT_STARTED],
        )
        _wait_for(lambda: instance.get_runs(filters=submitted), 60, "make up's run")
        (queued,) = instance.get_runs(filters=submitted)
        assert queued.status == dg.DagsterRunStatus.QUEUED  # one run at a time

        pid, _ = worker_pid(instance, killed)
        dagster_dev.kill()  # kill -9: the run worker, its code server, the daemon, the webserver
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.STARTED

        dagster_dev.start()  # `make up` again after the crash; no manual step
        _wait_for(lambda: instance.get_run_by_id(killed).is_finished, 120, "the killed run")
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        failures = instance.get_records_for_run(killed, of_type=dg.DagsterEventType.RUN_FAILURE)
        messages = [r.event_log_entry.dagster_event.message for r in failures.records]
        assert any(f"run worker process {pid} is gone" in m for m in messages), messages

        assert follower.result(timeout=300) == 0
        run = instance.get_run_by_id(queued.run_id)

    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == FIRST
    assert run.tags["dagster/asset_partition_range_end"] == LAST
    assert run.run_config["ops"]["anomaly_history"]["config"]["threshold"] == 3.5
    # Launched through the workspace, not in-process: re-executable, on the Overview timeline.
    assert run.remote_job_origin is not None
    assert run_origin_location(url, run.run_id) == "ubap"
    # The terminal: a line per finished step with its time, the final status; no DEBUG wall.
    out = capsys.readouterr().out
    steps = [line.split() for line in out.splitlines()]
    assert any(words[:2] == ["ok", "events"] and words[-1] == "s" for words in steps), out
    assert f"run {run.run_id} SUCCESS" in out
    assert "DEBUG" not in out


def test_after_a_failed_run_make_up_follows_the_publish_of_what_succeeded(capsys):
    from ubap_assets.defs.serving.sensors import PUBLISHES_AFTER_TAG
    from ubap_assets.launch import RunFollower

    @dg.asset
    def published() -> int:
        return 1

    instance = dg.DagsterInstance.ephemeral()
    lines: list[str] = []
    follower = RunFollower(instance, out=lines.append)
    materialize.follow_publish_after(instance, follower, "failed-run", wait_s=0.5)
    assert "is the publish_after_failure sensor on?" in capsys.readouterr().out

    publish = dg.materialize([published], instance=instance, tags={PUBLISHES_AFTER_TAG: "failed"})
    materialize.follow_publish_after(instance, follower, "failed", wait_s=5)
    assert f"run {publish.run_id} SUCCESS" in " ".join(lines)
    assert "published what succeeded" in capsys.readouterr().out
