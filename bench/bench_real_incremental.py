"""Benchmark: on a real event log, nightly runs give the tables one full run gives.

    .venv/bin/python bench/bench_real_incremental.py --source DIR --mapping M [--pages FILE]
        [--nights 7] [--max-reject-share 0.05] [--start YYYY-MM-DD] [--last-day YYYY-MM-DD]

``tests/test_incremental.py`` proves it on a synthetic world. A real log has what the
generator lacks: days without events, bursts, late hours, pages without text. Two private data
directories (ephemeral Dagster instances, in process) are built from the same log:

- incremental: ``refresh_job`` over every day but the last ``--nights``, then one scheduled run
  per night after it (``nightly_refresh`` or, on the first night of a training period,
  ``nightly_retrain``), as the schedules would request them;
- full: ``refresh_job`` over every day.

It prints each run's time, then every table whose rows differ (``tests/warehouse_diff.py``:
sorted rows, run ids left out, floats within 1e-9 relative), or that every table is equal.
The logs it was run on are listed in ``bench_real_logs.py``; none is committed.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _configure(args, data_dir: Path, start: date) -> None:
    os.environ.update(
        UBAP_DATA_DIR=str(data_dir),
        UBAP_SOURCE=str(Path(args.source).resolve()),
        UBAP_SOURCE_MAPPING=args.mapping or "",
        UBAP_START_DATE=start.isoformat(),
        UBAP_MAX_REJECT_SHARE=str(args.max_reject_share),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    os.environ.pop("GEMINI_API_KEY", None)  # the deterministic summary on both sides
    if args.pages:
        os.environ["UBAP_PAGES_FILE"] = str(Path(args.pages).resolve())


def _full(definitions, instance, first: date, last: date) -> float:
    started = time.perf_counter()
    result = definitions.resolve_job_def("refresh_job").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        raise_on_error=False,
    )
    failed = [e.step_key for e in result.get_step_failure_events()]
    if failed:
        raise SystemExit(f"refresh_job {first}..{last} failed at {failed}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the log's folder (UBAP_SOURCE)")
    parser.add_argument("--mapping", help="a built-in mapping or a mapping file")
    parser.add_argument("--pages", help="a page catalogue file (UBAP_PAGES_FILE)")
    parser.add_argument("--nights", type=int, default=7)
    parser.add_argument("--max-reject-share", type=float, default=0.05)
    parser.add_argument("--start", help="first day (default: the log's)")
    parser.add_argument("--last-day", help="last day (default: the log's)")
    parser.add_argument("--keep", help="build the two data directories here and keep them")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "bench"))
    from bench_real_logs import data_range

    first, last = data_range(args.source, args.mapping, args.pages)
    first = date.fromisoformat(args.start or first)
    last = date.fromisoformat(args.last_day or last)
    first_night = last - timedelta(days=args.nights - 1)
    if first_night <= first:
        raise SystemExit(f"{first} .. {last} is too short for {args.nights} nights")

    import dagster as dg

    from tests.nights import run_night
    from tests.warehouse_diff import differences
    from ubap_assets.definitions import defs

    with tempfile.TemporaryDirectory(prefix="ubap-real-incremental-") as tmp:
        root = Path(args.keep or tmp)
        incremental, full = root / "incremental", root / "full"
        print(f"{args.source}: {first} .. {last}; the last {args.nights} days night by night")

        _configure(args, incremental, first)
        definitions, instance = defs(), dg.DagsterInstance.ephemeral()
        seconds = _full(definitions, instance, first, first_night - timedelta(days=1))
        print(f"  refresh_job {first} .. {first_night - timedelta(days=1)}  {seconds:7.1f} s")
        for i in range(args.nights):
            day = first_night + timedelta(days=i)
            started = time.perf_counter()
            job, steps = run_night(definitions, instance, day)
            slowest = ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:4]
            )
            print(f"  night of {day} ({job}){time.perf_counter() - started:13.1f} s; {slowest}")

        _configure(args, full, first)
        definitions, instance = defs(), dg.DagsterInstance.ephemeral()
        seconds = _full(definitions, instance, first, last)
        print(f"  refresh_job {first} .. {last} (the full run) {seconds:7.1f} s")

        found = differences(full / "warehouse.duckdb", incremental / "warehouse.duckdb")
    if found:
        print(f"\n{len(found)} table(s) differ:")
        for table, why in found.items():
            print(f"  {table}: {why}")
        raise SystemExit(1)
    print("\nevery table equals the full run's")


if __name__ == "__main__":
    main()
