"""Bounded load on the API served by uvicorn on 127.0.0.1: requests/s and p50/p99 latency.

Endpoints: a 30-day trend series, a user's recommendations (a different user each request),
the at-risk list (paged), and /health as the ceiling. Prints one table and the ratios.

    .venv/bin/python bench/bench_api.py                      # data/snapshots if published
    .venv/bin/python bench/bench_api.py --users 100000 --days 90   # build a 10M-event sample

The server is started exactly as the Makefile does (``uvicorn ubap_api.main:app --host
127.0.0.1``) on a free port; the client is a lean asyncio HTTP/1.1 keep-alive client in this
process, so on a 2-core machine client and server share the cores.
"""

import argparse
import asyncio
import atexit
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _util import free_port  # noqa: E402


def build_sample(users: int, days: int, seed: int, keep: bool = False) -> Path:
    import duckdb

    from tests.api_sample import build_warehouse, publish_sample
    from ubap_assets.core.synthetic import WorldSpec, generate_world

    started = time.perf_counter()
    start = date(2026, 1, 5)
    world = generate_world(WorldSpec(users=users, days=days, seed=seed, start_date=start))
    print(
        f"generated {world.events.height:,} events for {users:,} users x {days} days "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="ubap-bench-"))
    if not keep:
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        build_warehouse(con, world, kmeans=users <= 20_000)
        del world
        publish_sample(con, root / "snapshots", "bench-1")
    print(
        f"built and published the sample snapshot in {time.perf_counter() - started:.1f}s"
        + (f" (kept: --snapshots {root / 'snapshots'})" if keep else ""),
        flush=True,
    )
    return root / "snapshots"


def add_snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose what the API serves: a folder, or a sample built first."""
    parser.add_argument("--snapshots", type=Path, help="snapshot folder (default: data/snapshots)")
    parser.add_argument("--users", type=int, default=0, help="build a sample with this many users")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep a built sample for reuse")


def snapshots_to_serve(args: argparse.Namespace) -> Path:
    """The snapshot folder the options name: a built sample with --users, else --snapshots
    (default data/snapshots), else a 20,000-user sample when nothing is published there."""
    if args.users:
        return build_sample(args.users, args.days, args.seed, args.keep)
    snapshots = args.snapshots or Path(
        os.environ.get("UBAP_SNAPSHOT_DIR", REPO / "data" / "snapshots")
    )
    if not (snapshots / "CURRENT").exists():
        print(f"no snapshot in {snapshots}; building a 20,000-user sample", flush=True)
        snapshots = build_sample(20_000, args.days, args.seed, args.keep)
    return snapshots


def start_server(snapshots: Path, port: int, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "UBAP_SNAPSHOT_DIR": str(snapshots)}
    env.pop("UBAP_API_TOKEN", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "ubap_api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("uvicorn did not start within 60 s")


class Connection:
    """One keep-alive HTTP/1.1 connection; GET returns (status, snapshot header, body size)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str) -> tuple[int, str, int]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers.get("x-ubap-snapshot", ""), len(body)


async def load(port: int, paths, seconds: float, concurrency: int, first: int = 0) -> dict:
    """Closed loop: ``concurrency`` connections, each sends its next request on an answer."""
    latencies: list[float] = []
    errors = 0
    snapshots: set[str] = set()
    counter = iter(range(first, 10**12))
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = await Connection.open(port)
        while time.perf_counter() < stop_at:
            path = paths(next(counter))
            t0 = time.perf_counter()
            status, snap, _ = await conn.get(path)
            latencies.append(time.perf_counter() - t0)
            snapshots.add(snap)
            if status != 200:
                errors += 1
        conn.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "errors": errors,
        "snapshots": snapshots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_snapshot_arguments(parser)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="open connections")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    snapshots = snapshots_to_serve(args)

    from ubap_assets.warehouse.reader import close_idle_connections, open_reader

    with open_reader(snapshots) as r:
        meta = r.meta()
        n_events = r.scalar("SELECT count(*) FROM events")
        users = r.query("SELECT user_id FROM users")["user_id"].to_list()
        at_risk = r.scalar("SELECT count(*) FROM user_predictions WHERE at_risk")
    close_idle_connections()
    random.Random(0).shuffle(users)
    end = meta.data_end
    start = end - timedelta(days=29)
    pages = max(1, at_risk // 50)
    print(
        f"snapshot {meta.snapshot_id}: {n_events:,} events, {len(users):,} users, "
        f"data {meta.data_start} .. {end}, {at_risk:,} at-risk users",
        flush=True,
    )

    endpoints = {
        "/health (ceiling)": lambda i: "/health",
        "trend series (30 days)": lambda i: f"/api/trends/daily?start={start}&end={end}",
        "user recommendations": lambda i: f"/api/recommendations/users/{users[i % len(users)]}",
        # (users are shuffled; a request never repeats within a run of fewer than len(users))
        "at-risk list (50/page)": lambda i: (
            f"/api/predictions/at-risk?limit=50&offset={50 * (i % pages)}"
        ),
    }
    port = free_port()
    server = start_server(snapshots, port, args.workers)
    results = {}
    try:
        for name, paths in endpoints.items():
            asyncio.run(load(port, paths, 1.0, args.concurrency))  # warm-up
            # Measured requests start past the warm-up's, so no user is asked for twice.
            measured = load(port, paths, args.seconds, args.concurrency, first=len(users) // 2)
            results[name] = asyncio.run(measured)
    finally:
        server.terminate()
        server.wait(timeout=10)

    ceiling = results["/health (ceiling)"]["rps"]
    print(
        f"\n{os.cpu_count()} CPUs, {args.workers} uvicorn worker(s), {args.concurrency} keep-alive "
        "connections, "
        f"{args.seconds:.0f} s per endpoint (after 1 s warm-up)"
    )
    print(
        f"{'endpoint':<26} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs health':>9} {'errors':>7}"
    )
    for name, res in results.items():
        print(
            f"{name:<26} {res['requests']:>9,} {res['rps']:>8,.0f} {res['p50']:>8.2f} "
            f"{res['p99']:>8.2f} {res['rps'] / ceiling:>9.2f} {res['errors']:>7}"
        )
    recs = results["user recommendations"]
    print(
        f"\nuser recommendations: {recs['requests']:,} requests over "
        f"{min(recs['requests'], len(users)):,} distinct users; target >= 1,000 req/s and "
        f"p99 < 50 ms: {'MET' if recs['rps'] >= 1000 and recs['p99'] < 50 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
