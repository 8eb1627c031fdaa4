"""Benchmark: features + segmentation + model training + predictions over ~10M events.

A child process generates the synthetic world (default 100k users x 90 days, about 10M events)
into a temporary DuckDB file day by day, so the generator's memory is not counted; this process
then runs each stage the way the assets do and prints seconds per stage and peak RSS, then
each task's test-window metrics (n, positives, bootstrap 95% intervals; the model in service
marked *). Targets: under 120 s in total and under 4 GB peak RSS.

    .venv/bin/python bench/bench_models.py [--users 100000] [--days 90] [--db PATH]
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from ubap_assets.core import features as fx
from ubap_assets.core import models as mdl
from ubap_assets.core import segmentation as seg
from ubap_assets.core import synthetic
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.predictions import ServedModel, predict_users

TARGET_SECONDS = 120
TARGET_RSS_MIB = 4096


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(db: str, users: int, days: int, seed: int) -> None:
    """Write users, pages, personas and events (one day at a time) into ``db``."""
    spec = synthetic.WorldSpec(users=users, days=days, seed=seed, start_date=date(2026, 1, 5))
    pop = synthetic.population(spec)
    pages = page_catalogue()
    con = duckdb.connect(db)
    for name, frame in (
        ("users", synthetic.users_frame(spec, pop)),
        ("pages", pages),
        ("user_personas", synthetic.personas_frame(spec, pop)),
    ):
        con.register("incoming", frame)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM incoming")
        con.unregister("incoming")
    first = True
    for day in synthetic.events_by_day(spec, spec.start_date, spec.end_date, pop, pages):
        con.register("incoming", day)
        if first:
            con.execute("CREATE OR REPLACE TABLE events AS SELECT * FROM incoming")
            first = False
        else:
            con.execute("INSERT INTO events SELECT * FROM incoming")
        con.unregister("incoming")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="", help="reuse (or create) this DuckDB file")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:
        generate(args.db, args.users, args.days, args.seed)
        return

    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "bench.duckdb")
    if not Path(db).exists():
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-only",
                "--db",
                db,
                "--users",
                str(args.users),
                "--days",
                str(args.days),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        print(f"generated in a child process in {time.perf_counter() - t0:.1f} s (not counted)")
    con = duckdb.connect(db)
    n_events, n_users = con.execute(
        "SELECT count(*), count(DISTINCT user_id) FROM events"
    ).fetchone()
    print(f"events: {n_events:,} rows, {n_users:,} active users, {args.days} days")

    seconds: dict[str, float] = {}
    state: dict[str, object] = {}

    def stage(name: str, fn) -> None:
        t = time.perf_counter()
        state[name] = fn()
        seconds[name] = time.perf_counter() - t
        print(
            f"  {name:<32} {seconds[name]:7.2f} s   peak RSS {peak_rss_mib():7.0f} MiB", flush=True
        )

    stage("sessions + user_daily (core/daily.py)", lambda: build_all_daily(con))
    first, end = fx.daily_span(con)
    plan = fx.plan_windows(first, end)
    personas = con.execute("SELECT * FROM user_personas").pl()

    stage(
        "user_features (SQL, full history)",
        lambda: fx.compute_features(con, end, (end - first).days),
    )
    stage(
        "segments (k=3..10, Ward)",
        lambda: seg.segment_users(state["user_features (SQL, full history)"]),
    )
    stage("features at 3 cutoffs", lambda: mdl.cutoff_features(con, plan))
    fitted = "fit 6 candidates, choose, test"
    for task in mdl.TASKS:
        stage(
            f"{task}: labels",
            lambda task=task: mdl.training_data(con, plan, task, state["features at 3 cutoffs"]),
        )
        train, valid, test = state[f"{task}: labels"]
        ceiling = personas.select("user_id", score="purchase_propensity_14d")
        stage(
            f"{task}: {fitted}",
            lambda task=task, train=train, valid=valid, test=test, ceiling=ceiling: mdl.train_task(
                task,
                train,
                valid,
                test,
                plan,
                n_jobs=2,
                ceiling=ceiling if task == "conversion" else None,
            ),
        )

    def served(result: mdl.TaskResult) -> ServedModel:
        if not result.served:
            return ServedModel.missing(result.note)
        artifact = {"model": result.models[result.best], "design": result.design}
        return ServedModel(result.best, artifact, result.threshold())

    def predictions():
        features = fx.compute_features(con, end, plan.lookback_days)
        return predict_users(
            features,
            conversion=served(state[f"conversion: {fitted}"]),
            bounce=served(state[f"bounce: {fitted}"]),
            model_version="bench",
            scored_at=end,
        )

    stage("user_predictions (+ reasons)", predictions)

    total = sum(seconds.values())
    peak = peak_rss_mib()
    result = state["segments (k=3..10, Ward)"]
    agreement = seg.persona_agreement(result.segments, personas)["persona_ari"][0]
    print(
        f"segments: k={result.metrics['k']} silhouette={result.metrics['silhouette']:.3f} "
        f"persona ARI={agreement:.3f}"
    )
    print(
        f"windows: train {plan.train_cutoff:%Y-%m-%d}, validation {plan.valid_cutoff:%Y-%m-%d}, "
        f"test {plan.test_cutoff:%Y-%m-%d} .. {plan.end:%Y-%m-%d}; horizon {plan.horizon_days} "
        f"days, lookback {plan.lookback_days} days"
    )
    for task in mdl.TASKS:
        result = state[f"{task}: {fitted}"]
        print(f"{task} ({result.label}): {result.status} {result.note}")
        tested = result.metrics.filter(pl.col("split") == mdl.TEST)
        for row in tested.iter_rows(named=True):
            if row["model"] is None:
                continue
            ratio = row["auc_vs_ceiling"]

            def ci(metric: str, row=row) -> str:
                return (
                    f"{row[metric]:.3f} [{row[metric + '_ci_low']:.3f}, "
                    f"{row[metric + '_ci_high']:.3f}]"
                )

            print(
                f"  {'*' if row['is_best'] else ' '} {row['model']:<20} n={row['n']:,} "
                f"positives={row['positives']:,}  ROC-AUC {ci('roc_auc')}  PR-AUC {ci('pr_auc')}"
                f"  F1 {ci('f1')} at {row['threshold']:.3f}  Brier {ci('brier')}"
                f"  lift {ci('lift')}" + (f"  AUC/ceiling {ratio:.3f}" if ratio is not None else "")
            )
    print(
        f"TOTAL {total:.1f} s (target < {TARGET_SECONDS} s)   "
        f"peak RSS {peak:.0f} MiB (target < {TARGET_RSS_MIB} MiB)   "
        f"{'OK' if total < TARGET_SECONDS and peak < TARGET_RSS_MIB else 'OVER TARGET'}"
    )
    con.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
