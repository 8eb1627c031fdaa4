"""Day-after-day operation: seven nightly runs in a row over a pinned world under API load, then
a run killed with kill -9 mid-way, then the next run.

Everything is real: a ``dagster dev`` (webserver + daemon + run queue, as ``make up`` starts it)
over a private DAGSTER_HOME holding the project's dagster.yaml, runs submitted through the
webserver like the schedule's, the API as uvicorn serves it, and a client thread requesting it
throughout. The world is pinned (UBAP_START_DATE) far enough back that each "night" is a past
day partition, so the nights run back to back instead of one per day.

Printed per night: the run's time, whether the ground truth (``injected_anomalies``) equals the
generator's plan through the stored days, the days stored, snapshots and model versions on disk,
and the data folder's size. Then: how long the daemon took to mark the killed run FAILED, and the
run that follows. Last: API requests and failures (a failure is a 5xx or a refused connection).

    .venv/bin/python bench/bench_soak.py                    # 1,500 users, 42 + 7 + 1 days
    .venv/bin/python bench/bench_soak.py --users 5000 --nights 7
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _util import free_port  # noqa: E402

SEED = 7


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


class ApiLoad(threading.Thread):
    """Requests the API in a loop; counts answers by status and failed requests."""

    PATHS = (
        "/health",
        "/api/meta",
        "/api/trends/daily?dimension=all",
        "/api/trends/weekly",
        "/api/segments/list",
        "/api/predictions/at-risk?limit=20",
        "/api/anomalies/recent",
        "/api/funnels",
        "/api/retention",
        "/api/recommendations/metrics",
        "/api/summary/llm",
    )

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.requests = 0

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            path = self.PATHS[i % len(self.PATHS)]
            i += 1
            self.requests += 1
            try:
                with urllib.request.urlopen(self.base + path, timeout=30) as response:
                    self.statuses[response.status] += 1
            except urllib.error.HTTPError as err:
                self.statuses[err.code] += 1
                if err.code >= 500:
                    self.failures.append(f"{path}: {err.code} {err.read()[:200]!r}")
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                self.failures.append(f"{path}: {err}")


def start_group(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as sink:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--history", type=int, default=42, help="days of the first history")
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--keep", help="keep the data folder here (default: a temp folder)")
    args = parser.parse_args()

    data = Path(args.keep or tempfile.mkdtemp(prefix="ubap-soak-"))
    home = data / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=args.history + args.nights + 2)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "UBAP_DATA_DIR": str(data),
        "UBAP_START_DATE": start.isoformat(),
        "UBAP_HISTORY_DAYS": str(args.history),
        "UBAP_USERS": str(args.users),
        "UBAP_SEED": str(SEED),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    os.environ.update(env)  # this process reads the same instance and world

    import dagster as dg
    import duckdb

    from ubap_assets.core import synthetic
    from ubap_assets.launch import RunFollower, submit_refresh_run, wait_for_location
    from ubap_assets.lib.run_launcher import worker_pid
    from ubap_assets.materialize import start_dagster_dev, stop_process_group

    spec = synthetic.WorldSpec(users=args.users, days=args.history, seed=SEED, start_date=start)
    dagster_url = f"http://127.0.0.1:{free_port()}"
    api_port = free_port()
    print(f"soak: {args.users} users, world pinned at {start}, data in {data}", flush=True)
    os.chdir(REPO)  # dagster dev reads workspace.yaml from here
    dev = start_dagster_dev(dagster_url)  # logs to $DAGSTER_HOME/dagster-dev.log
    api = None
    load = None
    try:
        wait_for_location(dagster_url, timeout_s=300)
        instance = dg.DagsterInstance.get()
        follower = RunFollower(instance, out=lambda line: None)

        def night(first: date, last: date, **tags: str) -> tuple[dg.DagsterRun, float]:
            began = time.perf_counter()
            run_id = submit_refresh_run(
                dagster_url, first.isoformat(), last.isoformat(), trigger="soak", extra_tags=tags
            )
            return follower.follow(run_id), time.perf_counter() - began

        history_end = start + timedelta(days=args.history - 1)
        run, seconds = night(start, history_end)
        print(f"first history {start}..{history_end}: {run.status.value} in {seconds:.0f} s")
        if run.status != dg.DagsterRunStatus.SUCCESS:
            return 1

        api = start_group(
            [sys.executable, "-m", "uvicorn", "ubap_api.main:app"]
            + ["--host", "127.0.0.1", "--port", str(api_port)],
            env,
            data / "api.log",
        )
        wait_http(f"http://127.0.0.1:{api_port}/health", 120)
        api_rss_start = psutil.Process(api.pid).memory_info().rss / 2**20
        load = ApiLoad(f"http://127.0.0.1:{api_port}")
        load.start()

        def audit(last: date) -> dict[str, object]:
            with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
                stored = con.sql("SELECT * FROM injected_anomalies ORDER BY anomaly_date").pl()
                days = con.execute("SELECT count(DISTINCT event_ts::DATE) FROM events").fetchone()
                scored = con.execute("SELECT count(*) FROM anomaly_scores").fetchone()[0]
            plan = synthetic.anomaly_plan(spec, through=last).sort("anomaly_date")
            return {
                "truth_aligned": stored.select(plan.columns).equals(plan),
                "planted": plan.height,
                "scores": scored,
                "days": days[0],
                "snapshots": len(list((data / "snapshots").glob("*.duckdb"))),
                "model_versions": len([p for p in (data / "models").iterdir() if p.is_dir()]),
                "disk_mb": du_mb(data),
            }

        print(
            f"{'night':<12}{'status':<9}{'s':>6}  {'truth':<7}{'planted':>8}{'days':>6}"
            f"{'snapshots':>10}{'models':>8}{'disk MB':>9}"
        )
        nights_ok = True
        for n in range(1, args.nights + 1):
            day = history_end + timedelta(days=n)
            run, seconds = night(day, day)
            a = audit(day)
            nights_ok &= run.status == dg.DagsterRunStatus.SUCCESS and bool(a["truth_aligned"])
            print(
                f"{day.isoformat():<12}{run.status.value:<9}{seconds:6.0f}  "
                f"{'yes' if a['truth_aligned'] else 'NO':<7}{a['planted']:>8}{a['days']:>6}"
                f"{a['snapshots']:>10}{a['model_versions']:>8}{a['disk_mb']:>9.0f}",
                flush=True,
            )

        # kill -9 the run worker mid-run; the daemon marks the run FAILED and retries it.
        day = history_end + timedelta(days=args.nights + 1)
        run_id = submit_refresh_run(
            dagster_url, day.isoformat(), day.isoformat(), trigger="soak-kill"
        )
        while not instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=3
        ).records:
            time.sleep(0.5)
        found = worker_pid(instance, run_id)
        assert found is not None, "the run worker never recorded its pid"
        pid = found[0]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.perf_counter()
        while not instance.get_run_by_id(run_id).is_finished:
            time.sleep(0.5)
        detected = time.perf_counter() - killed_at
        status = instance.get_run_by_id(run_id).status.value
        print(f"kill -9 of run worker {pid}: run {run_id[:8]} {status} after {detected:.0f} s")
        after = follower.follow(run_id)  # the automatic retry, if the instance launched one
        if after.run_id == run_id:
            after, _ = night(day, day)  # what the next scheduled tick would do
            how = "the next run"
        else:
            how = "its automatic retry"
        truth = audit(day)["truth_aligned"]
        print(f"  {how} {after.run_id[:8]}: {after.status.value}; truth aligned: {truth}")

        load.stop.set()
        load.join(timeout=60)
        api_rss_end = psutil.Process(api.pid).memory_info().rss / 2**20
        print(
            f"API under load: {load.requests} requests, {len(load.failures)} failed, "
            f"statuses {dict(sorted(load.statuses.items()))}; "
            f"RSS {api_rss_start:.0f} -> {api_rss_end:.0f} MiB"
        )
        for failure in load.failures[:5]:
            print(f"  failed: {failure}")
        ok = (
            nights_ok
            and not load.failures
            and after.status == dg.DagsterRunStatus.SUCCESS
            and bool(truth)
        )
        print("soak:", "OK" if ok else "PROBLEMS (see above)")
        return 0 if ok else 1
    finally:
        if load is not None:
            load.stop.set()
        if api is not None:
            stop_process_group(api)
        stop_process_group(dev)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
