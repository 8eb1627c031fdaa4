"""Generate and store synthetic events: prints events/s and peak RSS for 1M and 10M events.

    python bench/bench_generate.py [--sizes 1m,10m] [--keep DIR]

Each size runs in a fresh child process so its peak RSS is its own. Storing goes through the
same code path as the `events` asset: a day at a time into one transaction.
Target: 10M events generated and stored in under 60 s with peak RSS under 4 GB.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# users x 90 days giving about 1M and 10M events
SIZES = {"1m": 12_500, "10m": 125_000}


def run_one(users: int, folder: Path) -> dict:
    import duckdb
    from _util import peak_rss_mb

    from ubap_assets.core.synthetic import WorldSpec, events_by_day
    from ubap_assets.lib.warehouse_io import replace_window

    spec = WorldSpec(users=users, days=90, seed=7, start_date=date(2026, 8, 1))
    timings = {"generate_s": 0.0}

    def timed_days():
        days = events_by_day(spec, spec.start_date, spec.end_date)
        while True:
            started = time.perf_counter()
            frame = next(days, None)
            timings["generate_s"] += time.perf_counter() - started
            if frame is None:
                return
            yield frame

    started = time.perf_counter()
    window = (
        datetime.combine(spec.start_date, datetime.min.time()),
        datetime.combine(spec.end_date, datetime.min.time()) + timedelta(days=1),
    )
    with duckdb.connect(str(folder / "bench.duckdb")) as con:
        rows = replace_window(con, "events", timed_days(), "event_ts", *window)
    total = time.perf_counter() - started
    return {
        "events": rows,
        "generate_s": timings["generate_s"],
        "store_s": total - timings["generate_s"],
        "total_s": total,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1m,10m")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(run_one(args.child, Path(folder))))
        return
    print(
        f"{'size':>5} {'events':>11} {'generate s':>11} {'store s':>8} {'total s':>8} "
        f"{'events/s':>11} {'peak RSS MiB':>13}"
    )
    for size in args.sizes.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(SIZES[size])],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{size:>5} {r['events']:>11,} {r['generate_s']:>11.2f} {r['store_s']:>8.2f} "
            f"{r['total_s']:>8.2f} {r['events'] / r['total_s']:>11,.0f} {r['peak_rss_mb']:>13,.0f}"
        )


if __name__ == "__main__":
    main()
