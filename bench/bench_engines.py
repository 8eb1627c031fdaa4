"""Benchmark: the heavy SQL stages on DuckDB and on Spark, side by side, events/s per stage.

The synthetic world (about 1.05 events per user per day: 100k users x 90 days is about 9.4M
events) is generated once and cached as Parquet, one file per day, so both engines read the same
events. Each engine then runs in a fresh child process, as the pipeline runs it:

- DuckDB: the events inserted into a warehouse file a day at a time in one transaction
  (lib/warehouse_io.replace_window, as the events asset), then the four day tables built in it
  (core/daily.py, 7 days per INSERT), each stage on its own connection with the pipeline's
  memory cap (connect_warehouse).
- Spark: the events written to the lake's day folders (engines/lake.write_days, as the events
  asset with UBAP_ENGINE=spark: polars, no Spark), then the four day tables built by Spark over
  the lake (engines/spark.SparkDays: the same SQL transpiled by SQLGlot, one job per table).

Both build the whole span (a backfill), then compute the trend stages that run on the engine
(daily_trends, funnel_daily, funnel_dimensions, weekly_trends, retention_cohorts,
lifecycle_weekly: core/trends on the warehouse, or on Spark through engines/spark_connection.py;
their small frames are fetched, not written), then build the last day's four tables again (a
nightly run). Printed per stage: seconds, the world's events per second, rows (they must match
between engines, or the benchmark fails), and the peak resident memory of each child (for
Spark, the Python driver and the JVM it starts, via psutil). The Spark session's start is
timed apart. With ``--project``: a sizing table projected from the Spark throughput, stated as
a projection.

    .venv/bin/python bench/bench_engines.py --users 5000 --days 14     # quick, ~74k events
    .venv/bin/python bench/bench_engines.py --project                  # ~9.4M events
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import psutil

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 8, 1)
ENGINES = ("duckdb", "spark")
WRITE = "events write"
DAY_STAGES = ("sessions", "user_daily", "page_daily", "user_page_daily")
TREND_STAGES = (
    "daily_trends",
    "funnel_daily",
    "funnel_dimensions",
    "weekly_trends",
    "retention_cohorts",
    "lifecycle_weekly",
)
NIGHTLY = "nightly: 4 tables, 1 day"
STAGES = (WRITE, *DAY_STAGES, *TREND_STAGES, NIGHTLY)
EVENTS_PER_DAY = (10**7, 10**8, 10**9, 5 * 10**9, 10**10, 5 * 10**10)


# --- the cached world -------------------------------------------------------------------------


def world_folder(cache: Path, users: int, days: int, seed: int) -> Path:
    return cache / f"world-u{users}-d{days}-s{seed}-{START.isoformat()}"


def cached_world(cache: Path, users: int, days: int, seed: int) -> tuple[Path, dict]:
    """The world's folder (``events/<day>.parquet``, ``pages.parquet``, ``world.json``),
    generated when missing; ``world.json`` is written last, so a cut-short one is redone."""
    from ubap_assets.core.catalogue import page_catalogue
    from ubap_assets.core.synthetic import WorldSpec, events_by_day

    folder = world_folder(cache, users, days, seed)
    marker = folder / "world.json"
    if marker.exists():
        return folder, json.loads(marker.read_text())
    spec = WorldSpec(users=users, days=days, seed=seed, start_date=START)
    lo = datetime.combine(spec.start_date, datetime.min.time())
    hi = datetime.combine(spec.end_date + timedelta(days=1), datetime.min.time())
    (folder / "events").mkdir(parents=True, exist_ok=True)
    started, total = time.perf_counter(), 0
    pages = page_catalogue()
    pages.write_parquet(folder / "pages.parquet")
    frames = events_by_day(spec, spec.start_date, spec.end_date)
    for day, frame in zip(spec.dates(), frames, strict=True):
        # The rows the events asset keeps: inside the world's window (a last session may end
        # after midnight of its last day).
        kept = frame.filter((pl.col("event_ts") >= lo) & (pl.col("event_ts") < hi))
        kept.write_parquet(folder / "events" / f"{day.isoformat()}.parquet")
        total += kept.height
    world = {
        "users": users,
        "days": days,
        "seed": seed,
        "start": spec.start_date.isoformat(),
        "end": (spec.end_date + timedelta(days=1)).isoformat(),
        "events": total,
        "generate_s": time.perf_counter() - started,
    }
    marker.write_text(json.dumps(world))
    return folder, world


# --- the child: one engine --------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """Peak resident memory of this process and of its largest child (the JVM), MiB, sampled
    every 100 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.own = self.children = 0.0
        self.running = True

    def reset(self) -> None:
        self.own = self.children = 0.0

    def sample(self) -> None:
        own = self.process.memory_info().rss
        # The largest child, not their sum: a helper the JVM spawns reports the JVM's pages
        # until it execs, which a sum would count twice.
        largest = 0
        for child in self.process.children(recursive=True):
            try:
                largest = max(largest, child.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        self.own = max(self.own, own / 2**20)
        self.children = max(self.children, largest / 2**20)

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(0.1)


class Stages:
    """Times each stage and the peak memory while it ran; prints a line per stage."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.sampler = MemorySampler()
        self.sampler.start()
        self.results: dict[str, dict] = {}

    def run(self, name: str, work, excluded=lambda: 0.0) -> int:
        """Run ``work()`` (it returns the rows written) as stage ``name``; ``excluded()`` gives
        seconds inside it that are not the engine's (reading the cache)."""
        self.sampler.sample()
        self.sampler.reset()
        started = time.perf_counter()
        rows = work()
        seconds = time.perf_counter() - started - excluded()
        self.sampler.sample()
        self.results[name] = {
            "seconds": seconds,
            "rows": int(rows),
            "peak_mib": self.sampler.own,
            "children_peak_mib": self.sampler.children,
        }
        print(
            f"  {self.engine:<7}{name:<26}{seconds:9.2f} s {int(rows):>12,} rows   "
            f"RSS {self.sampler.own:7,.0f} MiB, child {self.sampler.children:7,.0f} MiB",
            flush=True,
        )
        return int(rows)


def cached_events(folder: Path, timer: dict):
    """The cached events a day at a time; the seconds spent reading go to ``timer["read_s"]``."""
    for path in sorted((folder / "events").glob("*.parquet")):
        started = time.perf_counter()
        frame = pl.read_parquet(path)
        timer["read_s"] += time.perf_counter() - started
        yield frame


def _heavy_stages(days, trends_on, start: date, end: date, stages: Stages) -> None:
    """The four day tables over [start, end) (``days()``: where they are built), the trend
    stages that run on the engine (``trends_on()``: the connection they query), then the last
    day's four tables again, as a nightly run."""
    from ubap_assets.core import daily, trends

    builders = {
        "sessions": daily.build_sessions,
        "user_daily": daily.build_user_daily,
        "page_daily": daily.build_page_daily,
        "user_page_daily": daily.build_user_page_daily,
    }
    for name, build in builders.items():
        stages.run(name, lambda build=build: build(days(), start, end))
    computations = {
        "daily_trends": lambda con: trends.daily_trends(con, start, end),
        "funnel_daily": lambda con: trends.funnel_daily(con, start, end),
        "funnel_dimensions": lambda con: trends.funnel_dimensions(con, start, end),
        "weekly_trends": trends.weekly_trends,
        "retention_cohorts": trends.retention_cohorts,
        "lifecycle_weekly": trends.lifecycle_weekly,
    }
    for name in TREND_STAGES:
        stages.run(name, lambda name=name: computations[name](trends_on()).height)
    last = end - timedelta(days=1)
    stages.run(NIGHTLY, lambda: sum(build(days(), last, end) for build in builders.values()))


def measure_duckdb(folder: Path, world: dict) -> dict:
    from ubap_assets.lib.warehouse_io import connect_warehouse, replace_window
    from ubap_assets.warehouse import tables

    start, end = date.fromisoformat(world["start"]), date.fromisoformat(world["end"])
    database = str(Path(os.environ["UBAP_DATA_DIR"]) / "warehouse.duckdb")
    stages = Stages("duckdb")
    with connect_warehouse(database) as con:
        con.execute(
            f"CREATE TABLE {tables.PAGES} AS SELECT * FROM read_parquet(?)",
            [str(folder / "pages.parquet")],
        )
    timer = {"read_s": 0.0}

    def write() -> int:
        lo, hi = (datetime.combine(d, datetime.min.time()) for d in (start, end))
        with connect_warehouse(database) as con:
            return replace_window(
                con, tables.EVENTS, cached_events(folder, timer), "event_ts", lo, hi
            )

    stages.run(WRITE, write, lambda: timer["read_s"])
    connections = []

    def fresh():  # a fresh connection per stage, as each pipeline step opens one
        while connections:
            connections.pop().close()
        connections.append(connect_warehouse(database))
        return connections[-1]

    _heavy_stages(fresh, fresh, start, end, stages)
    while connections:
        connections.pop().close()
    return {"stages": stages.results, "threads": _duckdb_threads(database)}


def _duckdb_threads(database: str) -> int:
    from ubap_assets.lib.warehouse_io import connect_warehouse

    with connect_warehouse(database) as con:
        return int(con.execute("SELECT current_setting('threads')").fetchone()[0])


def measure_spark(folder: Path, world: dict) -> dict:
    from ubap_assets.engines import lake
    from ubap_assets.engines.spark import SparkDays, spark_session
    from ubap_assets.engines.spark_connection import SparkConnection
    from ubap_assets.warehouse import tables

    start, end = date.fromisoformat(world["start"]), date.fromisoformat(world["end"])
    lake_dir = Path(os.environ["UBAP_DATA_DIR"]) / "lake"
    stages = Stages("spark")
    started = time.perf_counter()
    spark = spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - started
    print(f"  spark  session start {session_s:.1f} s (not in the stages)", flush=True)
    timer = {"read_s": 0.0}
    stages.run(
        WRITE,
        lambda: lake.write_days(
            lake_dir, tables.EVENTS, cached_events(folder, timer), "event_ts", start, end
        ),
        lambda: timer["read_s"],
    )
    pages = pl.read_parquet(folder / "pages.parquet")
    days = SparkDays(spark, lake_dir, extra={tables.PAGES: pages})
    _heavy_stages(lambda: days, lambda: SparkConnection(spark, lake_dir), start, end, stages)
    master = spark.sparkContext.master
    spark.stop()
    return {"stages": stages.results, "session_s": session_s, "master": master}


def child_main(engine: str, folder: Path) -> None:
    world = json.loads((folder / "world.json").read_text())
    measure = measure_duckdb if engine == "duckdb" else measure_spark
    result = measure(folder, world)
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: both engines, the tables ----------------------------------------------------


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_engine(engine: str, folder: Path, master: str, driver_memory: str) -> dict:
    """Run one engine's child on a private data directory; its progress lines are echoed."""
    with tempfile.TemporaryDirectory(prefix=f"ubap-bench-{engine}-") as data:
        env = {
            **os.environ,
            "UBAP_DATA_DIR": data,
            "UBAP_ENGINE": engine,
            "UBAP_SPARK_MASTER": master,
            "UBAP_SPARK_DRIVER_MEMORY": driver_memory,
            "PYTHONPATH": str(REPO),
        }
        env.pop("UBAP_SPARK_REMOTE", None)
        env.pop("UBAP_LAKE_DIR", None)
        log = Path(data) / "stderr.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", engine, "--world", str(folder)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            result = None
            for line in proc.stdout:
                if "RESULT " in line:
                    result = json.loads(line.split("RESULT ", 1)[1])
                else:
                    print(line, end="", flush=True)
            proc.wait()
        if proc.returncode or result is None:
            sys.exit(
                f"the {engine} run failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}"
            )
    return result


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f}" if seconds > 0 else "-"


def print_table(world: dict, results: dict[str, dict], load: dict[str, tuple[str, str]]) -> bool:
    """The side-by-side table; returns whether the row counts agree."""
    events, days = world["events"], world["days"]
    last_day_events = round(events / days)  # events/s of the nightly: a mean day's events
    spark_label = f"Spark {results['spark']['master']}"
    duck_label = f"DuckDB ({results['duckdb']['threads']} threads)"
    print()
    print(
        f"{'stage':<26}{duck_label:>22}{'events/s':>12} | {spark_label:>18}{'events/s':>12}"
        f" | {'Spark/DuckDB':>12} | {'rows':>12}"
    )
    agree = True
    groups = {"day tables (4, backfill)": DAY_STAGES, "trend stages (6)": TREND_STAGES}
    for stage in STAGES:
        d, s = (results[engine]["stages"][stage] for engine in ENGINES)
        n = last_day_events if stage == NIGHTLY else events
        same = d["rows"] == s["rows"]
        agree &= same
        rows = f"{d['rows']:,}" if same else f"DIFFER {d['rows']:,} vs {s['rows']:,}"
        print(
            f"{stage:<26}{d['seconds']:>20.2f} s{rate(n, d['seconds']):>12} | "
            f"{s['seconds']:>16.2f} s{rate(n, s['seconds']):>12} | "
            f"{s['seconds'] / max(d['seconds'], 1e-9):>11.1f}x | {rows:>12}"
        )
    for label, members in groups.items():
        d, s = (sum(results[e]["stages"][m]["seconds"] for m in members) for e in ENGINES)
        print(
            f"{label:<26}{d:>20.2f} s{rate(events, d):>12} | "
            f"{s:>16.2f} s{rate(events, s):>12} | {s / max(d, 1e-9):>11.1f}x |"
        )
    print(
        f"(events/s: the world's {events:,} events over the stage's seconds, whatever table "
        f"the stage reads; the nightly row: a mean day's {last_day_events:,} events. rows: "
        "written by a day table, returned by a trend stage)"
    )
    print(f"Spark session start: {results['spark']['session_s']:.1f} s (not in the stages)")
    for engine in ENGINES:
        stages = results[engine]["stages"].values()
        own = max(r["peak_mib"] for r in stages)
        children = max(r["children_peak_mib"] for r in stages)
        what = "Python driver" if engine == "spark" else "process"
        jvm = f", JVM {children:,.0f} MiB" if engine == "spark" else ""
        print(f"peak RSS {engine}: {what} {own:,.0f} MiB{jvm}")
    for engine in ENGINES:
        before, after = load[engine]
        print(f"load average (1, 5, 15 min) {engine}: {before} before, {after} after")
    return agree


def cores_of(master: str) -> int:
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside.split(",")[0])


def print_projection(
    world: dict, results: dict, window_hours: float, executor_cores: int, headroom: float
) -> None:
    """Spark cores and executors for the nightly's day tables, projected from local[N]."""
    events = world["events"]
    master = results["spark"]["master"]
    cores = cores_of(master)
    stages = results["spark"]["stages"]
    spark_s = sum(stages[s]["seconds"] for s in DAY_STAGES)
    per_core = events / spark_s / cores
    duck_s = sum(results["duckdb"]["stages"][s]["seconds"] for s in DAY_STAGES)
    window_s = window_hours * 3600
    print()
    print(
        f"PROJECTION (not measured): Spark cores for the four day tables of one day's events "
        f"within {window_hours:g} h"
    )
    print(
        f"Assumes linear scaling per core from {master} here: {events:,} events in "
        f"{spark_s:.1f} s on {cores} cores = {per_core:,.0f} events/s per core (a shared "
        f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs). No "
        f"shuffle-network, skew or storage limits are modelled; executors of {executor_cores} "
        f"cores with {headroom:g}x headroom."
    )
    print(f"{'events/day':>16}{'core-hours':>12}{'cores':>10}{'executors':>11}")
    for per_day in EVENTS_PER_DAY:
        core_s = per_day / per_core
        needed = math.ceil(core_s / window_s)
        executors = math.ceil(needed * headroom / executor_cores)
        print(f"{per_day:>16,}{core_s / 3600:>12.2f}{needed:>10,}{executors:>11,}")
    trends_s = sum(stages[s]["seconds"] for s in TREND_STAGES)
    print(
        f"The six trend stages took {trends_s:.1f} s more on Spark over the same "
        f"{world['days']} days ({trends_s / spark_s:.0%} of the day tables), not in the table."
    )
    if events < 1_000_000:
        print(
            "Under 1M events each Spark job's fixed cost dominates: project from a run of "
            "about 10M events (the defaults)."
        )
    print(
        f"DuckDB, for comparison: {events / duck_s:,.0f} events/s on one machine "
        f"({results['duckdb']['threads']} threads) = {events / duck_s * window_s:,.0f} "
        f"events/day in {window_hours:g} h"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ubap-bench-engines",
        help="folder of the generated worlds (reused across runs)",
    )
    parser.add_argument("--master", default="local[2]", help="Spark master (UBAP_SPARK_MASTER)")
    parser.add_argument("--driver-memory", default="2g", help="UBAP_SPARK_DRIVER_MEMORY")
    parser.add_argument("--project", action="store_true", help="print the sizing projection")
    parser.add_argument("--window-hours", type=float, default=1.0)
    parser.add_argument("--executor-cores", type=int, default=4)
    parser.add_argument("--headroom", type=float, default=1.5)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.world)
        return
    for name in ("users", "days"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.window_hours <= 0 or args.executor_cores < 1 or args.headroom < 1:
        parser.error("--window-hours must be > 0, --executor-cores >= 1 and --headroom >= 1")

    sys.path.insert(0, str(REPO))
    print(f"load average (1, 5, 15 min) at start: {load_average()} on {os.cpu_count()} CPUs")
    folder, world = cached_world(args.cache, args.users, args.days, args.seed)
    print(
        f"world: {args.users:,} users x {args.days} days, seed {args.seed}: "
        f"{world['events']:,} events (generated in {world['generate_s']:.1f} s, cached in "
        f"{folder})",
        flush=True,
    )
    results, load = {}, {}
    for engine in ENGINES:
        before = load_average()
        results[engine] = run_engine(engine, folder, args.master, args.driver_memory)
        load[engine] = (before, load_average())
    agree = print_table(world, results, load)
    if args.project:
        print_projection(world, results, args.window_hours, args.executor_cores, args.headroom)
    if not agree:
        sys.exit("FAILED: the engines wrote different row counts (see the rows column)")


if __name__ == "__main__":
    main()
