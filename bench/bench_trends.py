"""Benchmark: trends, funnels, retention and anomalies over ~10M events (prints seconds per asset).

Generates the events once with the synthetic generator (default 100k users x 90 days, about
9.5M events), writes them to a temporary DuckDB file (with the generator's personas standing in
for user_segments), then runs each asset's computation the way the asset does: ``sessions`` is
one SQL pass over ``events`` written inside DuckDB; the others aggregate ``sessions`` and write
their (small) result table.

    .venv/bin/python bench/bench_trends.py [--users 100000] [--days 90] [--threads N]
"""

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from ubap_assets.core import anomalies, trends
from ubap_assets.core.synthetic import WorldSpec, generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = default)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    world = generate_world(
        WorldSpec(users=args.users, days=args.days, seed=args.seed, start_date=date(2026, 1, 5))
    )
    events, pages, personas = world.events, world.pages, world.personas  # noqa: F841 (SQL scans)
    injected = world.anomalies
    t_gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        if args.threads:
            con.execute(f"SET threads = {int(args.threads)}")
        t0 = time.perf_counter()
        con.execute("CREATE TABLE events AS SELECT * FROM events")
        con.execute("CREATE TABLE pages AS SELECT * FROM pages")
        # Stand-in segments (the generator's personas) so the per-segment work is realistic.
        con.execute(
            "CREATE TABLE user_segments AS SELECT user_id, dense_rank() OVER (ORDER BY persona) - 1"
            " AS segment_id, persona AS segment_name FROM personas"
        )
        t_load = time.perf_counter() - t0
        print(
            f"events: {world.events.height:,} rows, {args.users:,} users, {args.days} days "
            f"(generated in {t_gen:.1f} s, loaded into DuckDB in {t_load:.1f} s)"
        )
        del world, events

        results: dict[str, float] = {}
        frames = {}

        def run(name, fn):
            t = time.perf_counter()
            frame = fn()
            frames[name] = frame
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame")
            results[name] = time.perf_counter() - t
            print(f"  {name:<18} {results[name]:6.2f} s  ({frame.height:,} rows)", flush=True)

        t = time.perf_counter()
        n_sessions = trends.build_sessions(con)
        results["sessions"] = time.perf_counter() - t
        print(f"  {'sessions':<18} {results['sessions']:6.2f} s  ({n_sessions:,} rows)", flush=True)
        run("daily_trends", lambda: trends.daily_trends(con))
        run("weekly_trends", lambda: trends.weekly_trends(con))
        run("segment_trends", lambda: trends.segment_trends(con))
        run("funnel_daily", lambda: trends.funnel_daily(con))
        run("funnel_segments", lambda: trends.funnel_segments(con))
        run("retention_cohorts", lambda: trends.retention_cohorts(con))
        run("lifecycle_weekly", lambda: trends.lifecycle_weekly(con))
        settings = anomalies.DetectorSettings()

        def anomaly_stage():
            series = anomalies.monitored_series(
                frames["daily_trends"],
                frames["segment_trends"],
                frames["funnel_daily"],
                frames["funnel_segments"],
            )
            history = anomalies.detect(series, settings)
            history, incidents, _ = anomalies.build_incidents(history, series, settings)
            anomalies.sensitivity(history, settings)
            frames["incidents"] = incidents
            return history

        run("anomaly_history", anomaly_stage)
        run("anomalies", lambda: anomalies.latest(frames["anomaly_history"], 7))
        t = time.perf_counter()
        scores, _ = anomalies.score_detection(frames["anomaly_history"], injected, settings)
        results["anomaly_scores"] = time.perf_counter() - t
        print(f"  {'anomaly_scores':<18} {results['anomaly_scores']:6.2f} s")
        total = sum(results.values())
        print(f"total: {total:.1f} s for {len(results)} assets (target < 30 s)")
        t = time.perf_counter()
        problems = trends.reconcile_daily(con, frames["daily_trends"])
        print(
            f"check daily_trends_reconcile (recount from raw events): "
            f"{time.perf_counter() - t:.2f} s, problems: {problems or 'none'}"
        )
        print(f"incidents: {frames['incidents'].height}")
        for row in scores.filter(scores["kind"] == "overall").iter_rows(named=True):
            print(
                f"  {row['detector']:<15} recall={row['recall']:.2f} "
                f"({row['detected']}/{row['injected']} planted incidents), "
                f"false incidents/30 days={row['false_incidents_per_30_days']:.2f}"
            )
        con.close()


if __name__ == "__main__":
    main()
