"""API memory under distinct query strings: resident memory before and after 1,500 requests.

Starts the API as the Makefile does (uvicorn on 127.0.0.1, one process) on a snapshot, warms
every endpoint once, then sends requests whose query strings never repeat (distinct
``min_probability`` values, date ranges, offsets) and prints the server's RSS before and after.
Target: growth < 100 MB, whatever the query strings.

    .venv/bin/python bench/bench_api_memory.py                  # data/snapshots if published
    .venv/bin/python bench/bench_api_memory.py --users 20000    # build a sample world first
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _util import free_port  # noqa: E402
from bench_api import (  # noqa: E402
    Connection,
    add_snapshot_arguments,
    snapshots_to_serve,
    start_server,
)


def distinct_paths(n: int, data_start, data_end) -> list[str]:
    """``n`` request paths, no two alike: five endpoints with filters that vary per request."""
    days = (data_end - data_start).days + 1
    ranges = [
        (data_start + timedelta(days=a), data_start + timedelta(days=b))
        for a in range(days)
        for b in range(a, days)
    ]
    paths = []
    for i in range(n):
        p = (i + 1) / (n + 1)  # a distinct probability per request
        kind = i % 5
        if kind == 0:
            paths.append(f"/api/predictions/high-value/best?min_probability={p:.6f}")
        elif kind == 1:
            paths.append(f"/api/predictions/at-risk?min_probability={p:.6f}&limit=50")
        elif kind == 2:
            start, end = ranges[(i // 5 * 7919) % len(ranges)]  # distinct while i < 5x
            paths.append(f"/api/trends/daily?start={start}&end={end}&dimension=device")
        elif kind == 3:
            start, end = ranges[(i // 5 * 104729) % len(ranges)]
            paths.append(f"/api/anomalies?start={start}&end={end}&limit=20")
        else:
            paths.append(f"/api/predictions/high-value/best?min_probability={p:.6f}&offset={i}")
    assert len(set(paths)) == n
    return paths


async def send_all(port: int, paths: list[str], concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = iter(paths)

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(port)
        for path in queue:
            t0 = time.perf_counter()
            status, _, _ = await conn.get(path)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
        conn.writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_snapshot_arguments(parser)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    snapshots = snapshots_to_serve(args)

    from ubap_assets.warehouse.reader import close_idle_connections, open_reader

    with open_reader(snapshots) as r:
        meta = r.meta()
        users = r.scalar("SELECT count(*) FROM user_predictions")
    close_idle_connections()
    paths = distinct_paths(args.requests, meta.data_start, meta.data_end)
    warm = sorted({p.split("?")[0] for p in paths})

    port = free_port()
    server = start_server(snapshots, port)
    try:
        proc = psutil.Process(server.pid)
        asyncio.run(send_all(port, warm, 1))  # every endpoint once: connections, indexes
        before = rss_mb(proc)
        started = time.perf_counter()
        latencies, errors = asyncio.run(send_all(port, paths, args.concurrency))
        elapsed = time.perf_counter() - started
        after = rss_mb(proc)
    finally:
        server.terminate()
        server.wait(timeout=10)

    latencies.sort()
    growth = after - before
    print(
        f"\nsnapshot {meta.snapshot_id}: {users:,} scored users, data {meta.data_start} .. "
        f"{meta.data_end}; {os.cpu_count()} CPUs, {args.concurrency} connections"
    )
    print(
        f"{len(paths):,} requests, all query strings distinct, in {elapsed:.1f} s "
        f"({len(paths) / elapsed:,.0f} req/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.1f} ms), {errors} errors"
    )
    print(f"API RSS before {before:,.0f} MB, after {after:,.0f} MB: growth {growth:+,.0f} MB")
    print(f"target growth < 100 MB: {'MET' if growth < 100 and errors == 0 else 'NOT MET'}")


if __name__ == "__main__":
    main()
