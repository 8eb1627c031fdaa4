"""Benchmark: the whole graph at scale, time and peak RSS per stage.

A child process materializes the whole graph (``refresh_job`` over every day, as ``make up``
does) on a fresh synthetic world in a private data directory, sampling its own resident memory
every 50 ms. The synthetic world has about 1.1 events per user per day, so 100k users x 90 days
is about 10M events and 1M users x 90 days about 100M. Printed: events, the total time and peak
RSS, per stage (the asset group of each step, checks included) its seconds and the peak RSS
while it ran, and the slowest steps. Targets (issue 16): 10M events no slower than 111 s with
peak RSS under 2 GB; 100M events under 20 minutes with peak RSS under 8 GB.

    .venv/bin/python bench/bench_scale.py --users 100000 --days 90     # ~10M events
    .venv/bin/python bench/bench_scale.py --users 1000000 --days 90    # ~100M events
"""

import argparse
import os
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from _util import measure_in_fresh_world


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class MemorySampler(threading.Thread):
    """Samples this process's resident memory: (epoch seconds, MiB) every ``interval``."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.samples, self.running = interval, [], True

    def run(self) -> None:
        while self.running:
            self.samples.append((time.time(), _rss_mib()))
            time.sleep(self.interval)

    def peak(self, start: float, end: float) -> float:
        inside = [mib for t, mib in self.samples if start <= t <= end]
        return max(inside, default=0.0)


def measure(days: int) -> dict:
    """Run in the child: the whole graph over all days; seconds and peak MiB per stage."""
    import dagster as dg
    import duckdb

    from ubap_assets.definitions import defs

    definitions = defs()
    group_of = step_groups(definitions)
    today = datetime.now(UTC).date()
    sampler = MemorySampler()
    sampler.start()
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = definitions.resolve_job_def("refresh_job").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": (today - timedelta(days=days)).isoformat(),
            "dagster/asset_partition_range_end": (today - timedelta(days=1)).isoformat(),
        },
        raise_on_error=False,
    )
    total = time.perf_counter() - started
    sampler.running = False
    starts: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "peak_mib": 0.0})
    steps: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind, step = event.event_type_value, event.step_key
        if kind == "STEP_START":
            starts[step] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            stage = group_of.get(step, "other")
            # A failed step's data carries no duration: its time is from its start event.
            step_start = starts.get(step, entry.timestamp)
            steps[step] = entry.timestamp - step_start
            stages[stage]["seconds"] += steps[step]
            window = sampler.peak(step_start, entry.timestamp)
            stages[stage]["peak_mib"] = max(stages[stage]["peak_mib"], window)
    failed = [e.step_key for e in result.get_step_failure_events()]
    with duckdb.connect(os.environ["UBAP_DATA_DIR"] + "/warehouse.duckdb", read_only=True) as con:
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return {
        "events": events,
        "seconds": total,
        "peak_mib": max((mib for _, mib in sampler.samples), default=0.0),
        "stages": stages,
        "steps": steps,
        "failed": failed,
    }


def step_groups(definitions) -> dict[str, str]:
    """Step key (an asset's or a check's op) -> the group of what it builds or checks."""
    graph = definitions.resolve_asset_graph()
    groups = {}
    for assets_def in graph.assets_defs:
        keys = list(assets_def.keys) or [check.asset_key for check in assets_def.check_keys]
        if keys and assets_def.is_executable:
            groups[assets_def.node_def.name] = graph.get(keys[0]).group_name
    for check in graph.asset_check_keys:  # a check's step: <asset>_<check>, or its op's name
        group = graph.get(check.asset_key).group_name
        groups.setdefault(f"{check.asset_key.to_python_identifier()}_{check.name}", group)
        groups.setdefault(check.name, group)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    r = measure_in_fresh_world("bench_scale", f"measure({args.days})", args.users, args.days)
    print(
        f"{args.users:,} users x {args.days} days: {r['events']:,} events\n"
        f"whole graph {r['seconds']:.1f} s, peak RSS {r['peak_mib']:,.0f} MiB"
        + (f"  FAILED steps: {r['failed']}" if r["failed"] else "")
    )
    print(f"{'stage':<18}{'seconds':>10}{'peak MiB':>12}")
    for stage, s in sorted(r["stages"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{stage:<18}{s['seconds']:>10.1f}{s['peak_mib']:>12,.0f}")
    slowest = sorted(r["steps"].items(), key=lambda kv: -kv[1])[:12]
    print("slowest steps: " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in slowest))


if __name__ == "__main__":
    main()
