"""Queue the whole graph over the full history as a real run of the instance, and follow it.

    python -m ubap_assets.materialize [--url URL] [--config FILE] [--first-day D] [--last-day D]
                                      [--start-dagster]

This is what ``make up`` runs once ``make serve``'s ``dagster dev`` is starting: every event
partition of the history goes into one ``refresh_job`` run (the events asset backfills as a
single run), followed by every downstream asset. The run is submitted through the webserver like
a launch from the UI, so it waits in the run queue, is launched by the daemon, shows on the
Overview timeline and can be re-executed. The terminal gets one line per finished step; the
logs and the event log are in the Dagster UI. Ctrl-C cancels the run.

``--start-dagster`` (``make materialize``) starts a ``dagster dev`` of its own for the run's
duration when nothing answers at ``--url``, logging to ``$DAGSTER_HOME/dagster-dev.log``.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from ubap_assets.defs.events import partitions
from ubap_assets.defs.ingest.sensors import FULL_REFRESH_PENDING_ENV
from ubap_assets.defs.serving.sensors import PUBLISHES_AFTER_TAG
from ubap_assets.launch import (
    LaunchError,
    RunFollower,
    graphql,
    submit_refresh_run,
    terminate_run,
    wait_for_location,
)

DEFAULT_URL = "http://127.0.0.1:3000"


def default_partition_range() -> tuple[str, str]:
    """The day partitions ``make up`` materializes: the pinned world's first day to yesterday, or
    to a historic log's last day (``defs/events/partitions.py``)."""
    return partitions.default_partition_range()


def read_run_config(path: str | None) -> dict[str, Any]:
    """The run config in a YAML (or JSON) file, as the launchpad would take it."""
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise LaunchError(f"RUN_CONFIG={path}: no such file")
    try:
        config = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise LaunchError(f"RUN_CONFIG={path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise LaunchError(f"RUN_CONFIG={path} must hold a mapping (ops:, resources:, ...)")
    return config


def start_dagster_dev(url: str) -> subprocess.Popen:
    """A ``dagster dev`` (webserver + daemon) in its own process group, logging to a file."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".")
    log = home / "dagster-dev.log"
    host, _, port = url.split("//", 1)[-1].rstrip("/").partition(":")
    print(f"starting dagster dev at {url} for this run (log: {log})", flush=True)
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
            + ["-h", host, "-p", port or "3000"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # this process queues the whole history next: the inbox sensor's first tick records
            # the files instead of queueing them again
            env={**os.environ, FULL_REFRESH_PENDING_ENV: "1"},
        )


def stop_process_group(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(url: str) -> bool:
    """Whether a Dagster webserver answers at ``url``."""
    try:
        graphql(url, "{ version }", timeout_s=5.0)
    except (OSError, KeyError, ValueError):
        return False
    return True


def cancel(url: str, run_id: str, timeout_s: float = 30.0) -> None:
    """Cancel the run (Ctrl-C) and wait a little for it to stop, before the services go."""
    print(f"\ncancelling run {run_id} ...", flush=True)
    try:
        terminate_run(url, run_id)
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                current = instance.get_run_by_id(run_id)
                if current is None or current.is_finished:
                    break
                time.sleep(0.5)
            status = current.status.value if current else "gone"
        print(f"run {run_id} {status}", flush=True)
    except Exception as err:  # the webserver may be stopping too; the monitor will fail it
        print(f"could not cancel run {run_id}: {err}", file=sys.stderr)


def follow_publish_after(
    instance: dg.DagsterInstance, follower: RunFollower, failed_run_id: str, wait_s: float
) -> None:
    """Follow the publish run the `publish_after_failure` sensor launches for a failed run, so
    what succeeded is served (and the terminal says so) before `make materialize` stops."""
    print("waiting for publish_after_failure to publish what succeeded ...", flush=True)
    tagged = dg.RunsFilter(tags={PUBLISHES_AFTER_TAG: failed_run_id})
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=tagged, limit=1)
        if runs:
            published = follower.follow(runs[0].run_id)
            if published.status == dg.DagsterRunStatus.SUCCESS:
                print("published what succeeded; the tables not refreshed say why", flush=True)
            return
        time.sleep(2.0)
    print(
        f"no publish run within {wait_s:.0f} s: is the publish_after_failure sensor on? "
        "Materialize serving_snapshot to publish what succeeded.",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    first, last = default_partition_range()
    first, last = args.first_day or first, args.last_day or last
    if first is None or last is None or last < first:
        print(
            f"nothing to materialize: the history starts {first}, the last day is {last}",
            file=sys.stderr,
        )
        return 2
    config = read_run_config(args.config)
    dagster_dev = None
    if args.start_dagster and not answers(args.url):
        dagster_dev = start_dagster_dev(args.url)
    run_id = None
    try:
        print(f"waiting for Dagster at {args.url} ...", flush=True)
        wait_for_location(args.url, timeout_s=args.wait)
        run_id = submit_refresh_run(
            args.url, first, last, config, trigger=args.trigger, wait_s=args.wait
        )
        print(f"queued refresh_job {first}..{last} as run {run_id}", flush=True)
        print(f"  {args.url}/runs/{run_id}", flush=True)
        with dg.DagsterInstance.get() as instance:
            follower = RunFollower(instance, out=lambda line: print(line, flush=True))
            final = follower.follow(run_id)
            ok = final.status == dg.DagsterRunStatus.SUCCESS
            if final.status == dg.DagsterRunStatus.FAILURE:
                follow_publish_after(instance, follower, final.run_id, args.publish_wait)
        where = f"{args.url}/runs/{final.run_id}"
        if dagster_dev is not None:  # stopped below: the run stays in the instance
            print(f"stopping dagster dev; `make serve` shows the run at {where}")
        elif not ok:
            print(f"the failed run, its logs and Re-execute: {where}")
        links = {"Dagster UI": args.url if dagster_dev is None else None}
        links |= {"API": args.api_url, "Dashboard": args.dashboard_url}
        for name, link in links.items():
            if link:
                print(f"{name:<11} {link}", flush=True)
        return 0 if ok else 1
    except KeyboardInterrupt:
        if run_id is not None:
            cancel(args.url, run_id)
        return 130
    finally:
        if dagster_dev is not None:
            stop_process_group(dagster_dev)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the Dagster webserver")
    parser.add_argument("--config", help="run config file (YAML), e.g. RUN_CONFIG=run.yaml")
    parser.add_argument("--first-day", help="first day partition (default: the history's first)")
    parser.add_argument("--last-day", help="last day partition (default: the history's last)")
    parser.add_argument("--trigger", default="make up", help="the ubap/trigger tag of the run")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for Dagster")
    parser.add_argument(
        "--publish-wait",
        type=float,
        default=120,
        help="after a failed run, seconds to wait for the publish run of what succeeded",
    )
    parser.add_argument("--api-url", help="printed with the other URLs at the end")
    parser.add_argument("--dashboard-url", help="printed with the other URLs at the end")
    parser.add_argument(
        "--start-dagster", action="store_true", help="start dagster dev if none answers at --url"
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
