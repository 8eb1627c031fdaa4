"""Submit a run to the running Dagster webserver and follow it in the terminal.

``make up`` goes through the instance like any other run: the run is submitted through the
webserver's GraphQL API (so it has a repository origin: re-executable, on the Overview timeline),
waits in the run queue (one DuckDB writer at a time) and is launched by the daemon of
``dagster dev``. Its progress is read back from the instance's event log: one line per finished
step with its duration, a failure with the first line of its error, then the final status.
"""

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql.transport.exceptions import TransportQueryError, TransportServerError

from ubap_assets.lib.run_partitions import RANGE_END_TAG, RANGE_START_TAG

LOCATION = "ubap"
REFRESH_JOB = "refresh_job"
TRIGGER_TAG = "ubap/trigger"
SUBMISSION_TAG = "ubap/submission"  # one per submit call: finds a run whose answer was lost
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"

_WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message causes { message } } }
      }
    }
    ... on PythonError { message }
  }
}
"""

_STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
}


class LaunchError(Exception):
    """The run could not be submitted; the message says why and what to do."""


def graphql(
    url: str, query: str, timeout_s: float = 10.0, variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``data`` of a GraphQL query to the webserver at ``url``."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)["data"]


def wait_for_location(url: str, timeout_s: float = 300.0, location: str = LOCATION) -> None:
    """Wait until the webserver at ``url`` answers and has loaded the code location."""
    deadline = time.monotonic() + timeout_s
    last = "the webserver does not answer"
    while time.monotonic() < deadline:
        try:
            workspace = graphql(url, _WORKSPACE_QUERY)["workspaceOrError"]
        except urllib.error.HTTPError as err:
            last = f"something else answers there (HTTP {err.code}): is the port taken?"
            time.sleep(1.0)
            continue
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError):
            time.sleep(1.0)
            continue
        entries = {e["name"]: e for e in workspace.get("locationEntries", [])}
        entry = entries.get(location)
        if entry is None:
            last = f"the webserver has no code location {location!r} (found {sorted(entries)})"
        elif entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                innermost = (loaded.get("causes") or [loaded])[-1]
                first = (innermost.get("message") or "unknown error").strip().splitlines()[0]
                raise LaunchError(
                    f"the code location {location!r} failed to load: {first} "
                    f"(the whole error is in the Dagster UI at {url}/locations)"
                )
            return
        else:
            last = f"the code location {location!r} is still loading"
        time.sleep(1.0)
    raise LaunchError(f"gave up after {timeout_s:.0f} s waiting for Dagster at {url}: {last}")


def _client(url: str) -> DagsterGraphQLClient:
    parts = urlsplit(url)
    return DagsterGraphQLClient(
        parts.hostname or "127.0.0.1",
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
    )


def _describe(err: DagsterGraphQLClientError) -> str:
    kind = err.args[0] if err.args else "error"
    detail = err.args[1] if len(err.args) > 1 else err.body
    if isinstance(detail, list):  # config validation: one message per invalid field
        detail = "; ".join(str(e.get("message", e)) for e in detail if isinstance(e, dict))
    return f"{kind}: {detail}" if detail else str(kind)


def _lost_in_transit(err: DagsterGraphQLClientError) -> bool:
    """The request or its answer did not get through (the webserver stopped or restarted), as
    against an answer that refused the run: the run may or may not have been queued."""
    cause = err.__cause__
    if isinstance(cause, TransportServerError):  # it answered; a proxy's 502-504 is a restart
        return cause.code in (502, 503, 504)
    return isinstance(cause, Exception) and not isinstance(cause, TransportQueryError)


_SUBMITTED_RUNS_QUERY = f"""
query ($tag: String!) {{
  runsOrError(filter: {{tags: [{{key: "{SUBMISSION_TAG}", value: $tag}}]}}, limit: 1) {{
    ... on Runs {{ results {{ runId }} }}
  }}
}}
"""


def _run_of_submission(url: str, submission: str) -> str | None:
    runs = graphql(url, _SUBMITTED_RUNS_QUERY, variables={"tag": submission})["runsOrError"]
    results = runs.get("results") or []
    return results[0]["runId"] if results else None


def submit_refresh_run(
    url: str,
    first: str,
    last: str,
    run_config: Mapping[str, Any] | None = None,
    trigger: str = "make up",
    extra_tags: Mapping[str, str] | None = None,
    wait_s: float = 300.0,
) -> str:
    """Queue ``refresh_job`` over the day partitions ``first``..``last``; returns the run id.

    When the answer is lost (the webserver stopped mid-request), waits up to ``wait_s`` for it
    to answer again and asks for the run by this submission's tag: a run it queued is returned,
    not queued twice; one it never got is submitted again."""
    submission = uuid.uuid4().hex
    tags = {RANGE_START_TAG: first, RANGE_END_TAG: last, TRIGGER_TAG: trigger}
    tags |= {**(extra_tags or {}), SUBMISSION_TAG: submission}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _client(url).submit_job_execution(
                REFRESH_JOB,
                repository_location_name=LOCATION,
                repository_name="__repository__",
                run_config=dict(run_config or {}),
                tags=tags,
            )
        except DagsterGraphQLClientError as err:
            if not _lost_in_transit(err):
                raise LaunchError(f"Dagster refused the run: {_describe(err)}") from None
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"the webserver at {url} stopped answering while the run was submitted "
                    f"({err.__cause__}); once `make serve` is up again, run this again"
                ) from None
        wait_for_location(url, timeout_s=max(deadline - time.monotonic(), 1.0))
        queued = _run_of_submission(url, submission)
        if queued is not None:
            return queued


def terminate_run(url: str, run_id: str) -> None:
    """Ask the webserver to cancel a queued or running run."""
    _client(url).terminate_run(run_id)


def _first_line(error: Any) -> str:
    """The first line of the innermost cause of a serializable error (the user's exception)."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    message = (getattr(error, "message", None) or "").strip()
    return message.splitlines()[0] if message else "unknown error"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{int(s // 60)} min {s % 60:02.0f} s"


class RunFollower:
    """Prints one line per finished step of a run, read from the instance's event log."""

    def __init__(self, instance: dg.DagsterInstance, out: Callable[[str], None] = print):
        self.instance = instance
        self.out = out

    def follow(self, run_id: str, poll_s: float = 1.0) -> dg.DagsterRun:
        """Follow ``run_id`` (and its automatic retry, if one is launched) until it ends."""
        run = self._follow_one(run_id, poll_s)
        while run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true":
            retry_id = self._wait_for_retry(run.run_id)
            if retry_id is None:
                break
            self.out(f"retrying automatically as run {retry_id} (from the failed step)")
            run = self._follow_one(retry_id, poll_s)
        return run

    def _wait_for_retry(self, run_id: str, timeout_s: float = 60.0) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.tags.get(AUTO_RETRY_RUN_ID_TAG):
                return run.tags[AUTO_RETRY_RUN_ID_TAG]
            time.sleep(1.0)
        return None

    def _follow_one(self, run_id: str, poll_s: float) -> dg.DagsterRun:
        cursor = None
        started: dict[str, float] = {}
        steps = 0
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is None:
                raise LaunchError(
                    f"run {run_id} is not in the instance at {self.instance.root_directory}"
                )
            while True:  # everything written so far; the status was read first, so none is lost
                page = self.instance.get_records_for_run(
                    run_id, cursor=cursor, of_type=_STEP_EVENTS
                )
                for record in page.records:
                    steps += self._report(record.event_log_entry, started)
                cursor = page.cursor
                if not page.has_more:
                    break
            if run.is_finished:
                break
            time.sleep(poll_s)
        record = self.instance.get_run_record_by_id(run_id)
        took = ""
        if record and record.start_time and record.end_time:
            took = f" in {_seconds(record.end_time - record.start_time)}"
        self.out(f"run {run_id} {run.status.value}{took} ({steps} steps finished)")
        return run

    def _report(self, entry: Any, started: dict[str, float]) -> int:
        event = entry.dagster_event
        kind = event.event_type
        step = event.step_key or ""
        if kind == dg.DagsterEventType.RUN_START:
            self.out(f"run {entry.run_id} started")
        elif kind == dg.DagsterEventType.STEP_START:
            started[step] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            duration = event.event_specific_data.duration_ms / 1000
            self.out(f"  ok      {step:<50} {_seconds(duration)}")
            return 1
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            duration = entry.timestamp - started.get(step, entry.timestamp)
            error = _first_line(event.event_specific_data.error)
            self.out(f"  FAILED  {step:<50} {_seconds(duration)}: {error}")
            return 1
        elif kind == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            self.out(f"  retry   {step}: {_first_line(event.event_specific_data.error)}")
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self.out(f"  skipped {step}")
        elif kind in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED):
            message = (entry.user_message or event.message or "").strip().splitlines()
            if message:
                self.out(f"  {message[0]}")
        return 0
