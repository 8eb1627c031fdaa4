"""Benchmark: a full materialization against a nightly run, at 90 and at 365 days of history.

For each history length a child process builds a fresh synthetic world whose last day is
yesterday (a private data directory and ephemeral Dagster instance), then times, in process:

- full: ``refresh_job`` over every day but the last (what ``make up`` runs);
- nightly: ``nightly_job`` over the last day and the day before (what ``nightly_refresh`` runs
  six nights a week: trends, features, segments and scores, no retraining), three times over
  the same night (a night is idempotent), the median taken: one run's time varies by about a
  fifth on a shared machine;
- retrain night: ``refresh_job`` over the same two days (what ``nightly_retrain`` runs on the
  first night of each training period, weekly by default).

The night measured is the latest one that ``nightly_refresh`` runs: when yesterday starts a
training period, the schedules run ``nightly_retrain`` that night, so the bench steps back to
the night before (the segments' refit and the recommender's weekly state rebuild then fall on
the retrain night, as in service).

It prints the three times, nightly / full (target <= 0.15 at 90 days), the week's mean night
((6 x nightly + retrain night) / 7) / full, the slowest nightly steps, and how the nightly time at
the longest history compares with the shortest (target: within 20%).

By default every history is cut from one world, the longest: the 90-day warehouse holds that
world's last 90 days, so each history's nightly run processes the same last day with the same
events and only the history behind it differs. A world of its own per history
(``--own-worlds``) also changes the last day: the synthetic traffic grows 0.2% a day, so a
365-day world's last day has about 47% more sessions than a 90-day world's.

    .venv/bin/python bench/bench_nightly.py [--users 20000] [--histories 90 365] [--own-worlds]
"""

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

from _util import measure_in_fresh_world

TARGET_RATIO = 0.15
TARGET_GROWTH = 0.20
NIGHTLY_RUNS = 3


def _steps(result) -> dict[str, float]:
    return {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"  # a failure's data carries no duration
    }


def measure(users: int, days: int) -> dict:
    """Run in a child process: full, nightly and retrain-night times for ``days`` of history,
    the world's last ``days`` days."""
    import dagster as dg

    from ubap_assets.definitions import defs
    from ubap_assets.defs.schedules import retrains_after
    from ubap_assets.settings import current_settings

    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=days), today - timedelta(days=1)
    # The night measured is the latest one that nightly_refresh runs: on the first night of a
    # training period the schedules run nightly_retrain (refresh_job) instead.
    every = current_settings().retrain_every_days
    while retrains_after(last, every):
        last -= timedelta(days=1)

    def run(job: str, start, end) -> tuple[float, dict[str, float]]:
        started = time.perf_counter()
        result = definitions.resolve_job_def(job).execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
            raise_on_error=False,
        )
        seconds = time.perf_counter() - started
        failed = [e.step_key for e in result.get_step_failure_events()]
        if failed:
            raise SystemExit(f"{job} {start}..{end} failed at {failed}")
        return seconds, _steps(result)

    full, _ = run("refresh_job", first, last - timedelta(days=1))
    # The same night, run again, rewrites the same days (the runs are idempotent): the median
    # of a few runs, since one run's time varies by a fifth on a shared machine.
    nights = [run("nightly_job", last - timedelta(days=1), last) for _ in range(NIGHTLY_RUNS)]
    nightly, steps = sorted(nights, key=lambda night: night[0])[len(nights) // 2]
    retrain, _ = run("refresh_job", last - timedelta(days=1), last)
    with __import__("duckdb").connect(os.environ["UBAP_DATA_DIR"] + "/warehouse.duckdb") as con:
        events, last_day = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE event_ts >= ?) FROM events", [last]
        ).fetchone()
    return {
        "days": days,
        "night": last.isoformat(),
        "events": events,
        "last_day_events": last_day,
        "full": full,
        "nightly": nightly,
        "nightly_runs": [seconds for seconds, _ in nights],
        "retrain": retrain,
        "nightly_steps": steps,
    }


def child(users: int, days: int, world_days: int) -> dict:
    return measure_in_fresh_world("bench_nightly", f"measure({users}, {days})", users, world_days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--histories", type=int, nargs="+", default=[90, 365])
    parser.add_argument(
        "--own-worlds", action="store_true", help="a world of each history's length"
    )
    args = parser.parse_args()
    longest = max(args.histories)
    print(
        f"{args.users:,} synthetic users; full = refresh_job over all days but the last; "
        + (
            "a world per history"
            if args.own_worlds
            else f"every history cut from one {longest}-day world"
        )
    )
    results = []
    for days in args.histories:
        r = child(args.users, days, days if args.own_worlds else longest)
        results.append(r)
        week = (6 * r["nightly"] + r["retrain"]) / 7
        ratio = r["nightly"] / r["full"]
        print(
            f"\n{days} days, {r['events']:,} events ({r['last_day_events']:,} on the last day, "
            f"{r['night']}, a night without retraining)\n"
            f"  full           {r['full']:8.1f} s\n"
            f"  nightly        {r['nightly']:8.1f} s   nightly / full {ratio:.3f}"
            f" (target <= {TARGET_RATIO}); the median of the runs "
            + ", ".join(f"{seconds:.1f}" for seconds in r["nightly_runs"])
            + " s\n"
            f"  retrain night  {r['retrain']:8.1f} s   mean night of a week / full "
            f"{week / r['full']:.3f}"
        )
        slowest = sorted(r["nightly_steps"].items(), key=lambda kv: -kv[1])[:10]
        print("  slowest nightly steps: " + ", ".join(f"{k} {v:.2f}" for k, v in slowest))
    if len(results) > 1:
        short, long = results[0], results[-1]
        growth = long["nightly"] / short["nightly"] - 1
        print(
            f"\nnightly at {long['days']} days vs {short['days']} days: {growth:+.1%} "
            f"(target within {TARGET_GROWTH:.0%})"
        )


if __name__ == "__main__":
    main()
