"""Ingest N events (10M by default) from Parquet and from CSV; print events/s.

    .venv/bin/python bench/bench_ingest.py [--events 10000000] [--users 100000] [--days 90]

The input is generated with numpy into a temporary directory (native schema, no session ids for
a fifth of the users so session derivation is exercised, 0.1% bad rows, 0.1% duplicated rows).
The third run appends a garbage tail to the CSV (an unterminated quote, binary bytes), which the
fast reader refuses: it measures the record-by-record salvage that turns such regions into
rejects.
Wall time depends on what else runs on the machine: CPU time and load average are printed too.
"""

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from ubap_assets.core.ingest import clear_cache, ingest_files
from ubap_assets.core.schema import EVENT_TYPES


def make_events(n: int, users: int, days: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us")
    offsets = np.sort(rng.integers(0, days * 86_400_000_000, n))
    user = rng.integers(0, users, n)
    kinds = rng.choice(len(EVENT_TYPES), n, p=[0.5, 0.2, 0.12, 0.08, 0.06, 0.025, 0.015])
    frame = pl.DataFrame(
        {
            "event_id": pl.int_range(n, eager=True).cast(pl.String).str.zfill(10),
            "user_id": pl.Series(user).cast(pl.String),
            "session_id": pl.Series(user * 1000 + offsets // 3_600_000_000 % 1000).cast(pl.String),
            "event_ts": pl.Series(start + offsets.astype("timedelta64[us]")),
            "event_type": pl.Series(np.array(EVENT_TYPES)[kinds]),
            "page_id": pl.Series(rng.integers(0, 160, n)).cast(pl.String).str.zfill(3),
            "device": pl.Series(np.array(["mobile", "desktop", "tablet"])[user % 3]),
            "traffic_source": pl.Series(np.array(["organic", "paid", "direct", "email"])[user % 4]),
            "revenue": pl.Series(np.round(rng.gamma(2.0, 40.0, n), 2)),
        }
    )
    frame = frame.with_columns(
        revenue=pl.when(pl.col("event_type") == "purchase").then("revenue"),
        session_id=pl.when(
            pl.col("user_id").str.ends_with("3") | pl.col("user_id").str.ends_with("7")
        )
        .then(None)
        .otherwise("session_id"),
    )
    # 0.1% rows with an unknown event type, 0.1% exact duplicates.
    bad = rng.random(n) < 0.001
    frame = frame.with_columns(
        event_type=pl.when(pl.Series(bad)).then(pl.lit("teleport")).otherwise("event_type")
    )
    return pl.concat([frame, frame.sample(fraction=0.001, seed=seed)])


# What a crashed export leaves at the end of a file: a quote that never closes, binary bytes.
GARBAGE_TAIL = b'x1,u1,s1,"2026-01-05T11:00:00,page_view\n\x00\x01\xff\xfe garbage\n'


def run(label: str, source: str, n: int) -> None:
    clear_cache()
    t0, c0 = time.perf_counter(), time.process_time()
    result = ingest_files(source, max_reject_share=0.01)
    first, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    day = ingest_files(source, start=datetime(2026, 1, 10), end=datetime(2026, 1, 11))
    cached = time.perf_counter() - t1
    s = result.stats
    print(
        f"{label:8s} {n:>11,} rows read in {first:6.1f} s = {n / first:>10,.0f} events/s "
        f"(CPU {cpu:.1f} s = {n / cpu:,.0f} events per CPU-second; "
        f"load {os.getloadavg()[0]:.1f}) | "
        f"loaded {s['rows_valid']:,}, rejected {s['rows_rejected']:,}, duplicates "
        f"{s['duplicates']:,}, sessions derived {s['sessions_derived']:,}, users {s['users']:,} | "
        f"next day window from cache {cached * 1000:.0f} ms ({day.events.height:,} events)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    t = time.perf_counter()
    events = make_events(args.events, args.users, args.days)
    print(
        f"generated {events.height:,} events in {time.perf_counter() - t:.1f} s "
        f"({os.cpu_count()} CPUs, polars {pl.__version__})"
    )
    with tempfile.TemporaryDirectory(prefix="ubap-bench-ingest-") as tmp:
        for kind in ("parquet", "csv", "csv+tail"):
            folder = Path(tmp) / kind
            folder.mkdir()
            path = folder / f"events.{kind.split('+')[0]}"
            t = time.perf_counter()
            if kind == "parquet":
                events.write_parquet(path)
            else:
                events.write_csv(path)
            rows = events.height
            if kind == "csv+tail":  # a cut-off export: the fast reader refuses it, rows salvaged
                with path.open("ab") as fh:
                    fh.write(GARBAGE_TAIL)
                rows += GARBAGE_TAIL.count(b"\n")
            size = path.stat().st_size / 1e6
            print(f"wrote {kind} ({size:,.0f} MB) in {time.perf_counter() - t:.1f} s")
            run(kind, str(folder), rows)
            path.unlink()


if __name__ == "__main__":
    main()
