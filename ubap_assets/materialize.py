"""Materialize the whole graph over the full history in one run, recorded in the local instance.

    python -m ubap_assets.materialize [--last-day YYYY-MM-DD]

This is the first half of ``make up``: every event partition from the start of the history to
yesterday goes into one run (the events asset backfills as a single run), followed by every
downstream asset. The run shows in the Dagster UI like any other.
"""

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from ubap_assets.definitions import defs
from ubap_assets.defs.events.partitions import daily_partitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--last-day", help="last day partition to include (default: yesterday)")
    args = parser.parse_args(argv)
    last = args.last_day or (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    first = daily_partitions.get_first_partition_key()
    if first is None or last < first:
        print(f"nothing to materialize: the history starts {first}", file=sys.stderr)
        return 2
    definitions = defs()
    job = definitions.resolve_job_def("refresh_job")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
                "ubap/trigger": "make up",
            },
            raise_on_error=False,
        )
    seconds = time.perf_counter() - started
    status = "succeeded" if result.success else "FAILED"
    print(f"materialized {first}..{last}: run {result.run_id} {status} in {seconds:.1f} s")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
