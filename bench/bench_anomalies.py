"""Benchmark: anomaly detection at incident level, the detector beside a rolling 3-sigma baseline.

Prints, over several seeds (default 5): on planted worlds (multi-day, partial, scoped anomalies)
the recall of planted incidents, days to detect and false incidents per 30 days; on the clean
worlds of the same seeds (nothing planted) false incidents per 30 days; mean and spread
(min..max). Then small sites (the generator, ~20 and ~55 sessions a day, six months, 5 seeds
each) with a 40% conversion drop for two weeks; the largest |score| in every anomaly_history;
and the time of the anomaly stage (series, detection, incidents, sensitivity, scoring) on
inputs at the scale of 10M events (a planted world's daily_trends / segment_trends / funnel
tables with every count x5, i.e. 100k users x 90 days; the stage's cost depends on the number
of days x scopes, not on the events).

Each world goes through the real trend functions in DuckDB, with the generator's personas
standing in for user_segments (as bench_trends does).

    .venv/bin/python bench/bench_anomalies.py [--users 20000] [--days 90] [--seeds 5]
        [--online-retail OnlineRetail.csv]

``--online-retail`` also runs the stage on a real log: the UCI Online Retail 30,000-line sample
(``OnlineRetail.csv`` in GitHub repo
``linumolk/Customer-Segmentation-RFM-Analysis-using-SQL-and-Power-BI``; see bench_real_logs.py),
each invoice a session that converts, its lines purchase events, the country standing in for the
traffic source; it prints the flags, the largest |score| and the incidents found.
"""

import argparse
import statistics
import time
from datetime import date, timedelta

import duckdb
import polars as pl

from ubap_assets.core import anomalies, trends
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.metrics import TREND_COLUMNS
from ubap_assets.core.schema import EVENTS_SCHEMA, INJECTED_ANOMALIES_SCHEMA
from ubap_assets.core.synthetic import (
    WorldSpec,
    day_events,
    generate_world,
    population,
)

START = date(2026, 1, 5)
SETTINGS = anomalies.DetectorSettings()


def trend_frames(events: pl.DataFrame, pages: pl.DataFrame, personas: pl.DataFrame | None) -> dict:
    """daily_trends, segment_trends, funnel_daily and funnel_segments of some events."""
    con = duckdb.connect()
    for name, frame in (("events", events), ("pages", pages)):
        con.register("frame", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        con.unregister("frame")
    if personas is not None:
        con.register("personas", personas)
        con.execute(
            "CREATE TABLE user_segments AS SELECT user_id, dense_rank() OVER (ORDER BY persona) - 1"
            " AS segment_id, persona AS segment_name FROM personas"
        )
    trends.build_sessions(con)
    frames = {
        "daily": trends.daily_trends(con),
        "segments": trends.segment_trends(con),
        "funnel": trends.funnel_daily(con),
        "funnel_segments": trends.funnel_segments(con),
    }
    con.close()
    return frames


def anomaly_stage(frames: dict, injected: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
    series = anomalies.monitored_series(
        frames["daily"], frames["segments"], frames["funnel"], frames["funnel_segments"]
    )
    history = anomalies.detect(series, SETTINGS)
    history, incidents, _ = anomalies.build_incidents(history, series, SETTINGS)
    anomalies.sensitivity(history, SETTINGS)
    scores, _ = anomalies.score_detection(history, injected, SETTINGS)
    return history, incidents, scores


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    return f"{fmt.format(mean)} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def small_site(users: int, seed: int) -> tuple[float, str, float]:
    """A six-month site of ``users`` users; checkout fails for 40% of buyers for two weeks from
    day 120. Returns (sessions per day, what the detector made of it, max |score|)."""
    spec = WorldSpec(users=users, days=180, seed=seed, start_date=START, anomalies=False)
    drop = START + timedelta(days=120)
    plan = pl.DataFrame(
        [
            {
                "anomaly_date": drop,
                "end_date": drop + timedelta(days=13),
                "days": 14,
                "kind": "conversion_drop",
                "metric": "conversion_rate",
                "direction": "drop",
                "dimension": "all",
                "dimension_value": "all",
                "magnitude": -0.4,
                "description": "checkout fails for 40% of buyers",
            }
        ],
        schema=INJECTED_ANOMALIES_SCHEMA,
    )
    people, pages = population(spec), page_catalogue()
    events = pl.concat([day_events(spec, d, people, pages, plan) for d in spec.dates()])
    frames = trend_frames(events, pages, None)
    history, incidents, _ = anomaly_stage(frames, plan)
    sessions = frames["daily"].filter(pl.col("dimension") == "all")["sessions"].mean()
    hit = incidents.filter(
        (pl.col("start_day") <= drop + timedelta(days=13)) & (pl.col("end_day") >= drop)
    )
    verdict = (
        f"incident {hit['incident_id'][0]} ({hit['days'][0]} days, "
        f"{(hit['start_day'][0] - drop).days} day(s) after the start)"
        if hit.height
        else "MISSED"
    )
    echo = pl.col("start_day").is_between(drop, drop + timedelta(days=13 + 7))
    others = incidents.filter(~echo).height - hit.filter(~echo).height
    return (
        sessions,
        f"{verdict}; other incidents in six months (beyond a week after): {others}",
        history["score"].abs().max(),
    )


def online_retail(path: str) -> None:
    """The anomaly stage on the UCI Online Retail sample (lines without a customer dropped)."""
    raw = pl.read_csv(path, infer_schema_length=0).filter(pl.col("CustomerID").is_not_null())
    events = raw.select(
        pl.format("{}:{}:{}", "InvoiceNo", "StockCode", pl.int_range(pl.len())).alias("event_id"),
        pl.col("CustomerID").alias("user_id"),
        pl.col("InvoiceNo").alias("session_id"),
        pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S").alias("event_ts"),
        pl.lit("purchase").alias("event_type"),
        pl.col("StockCode").alias("page_id"),
        pl.lit("unknown").alias("device"),
        pl.col("Country").alias("traffic_source"),
        (pl.col("UnitPrice").cast(pl.Float64) * pl.col("Quantity").cast(pl.Float64)).alias(
            "revenue"
        ),
    ).cast(EVENTS_SCHEMA)
    pages = (
        events.select("page_id")
        .unique()
        .with_columns(
            pl.lit("product").alias("page_type"),
            pl.lit(None, pl.String).alias("category"),
            pl.lit(None, pl.Float64).alias("price"),
            pl.lit("").alias("url"),
        )
    )
    frames = trend_frames(events, pages, None)
    t0 = time.perf_counter()
    empty_truth = pl.DataFrame(schema=INJECTED_ANOMALIES_SCHEMA)
    history, incidents, _ = anomaly_stage(frames, empty_truth)
    took = time.perf_counter() - t0
    daily = frames["daily"].filter(pl.col("dimension") == "all")
    print(
        f"\nUCI Online Retail sample: {events.height:,} purchase lines, {daily.height} days, "
        f"{daily['sessions'].mean():.0f} invoices/day; "
        f"{history.select('dimension', 'dimension_value', 'metric').n_unique()} series, "
        f"{int(history['has_baseline'].sum()):,} scored points, "
        f"{int(history['is_anomaly'].sum())} flags, max |score| "
        f"{history['score'].abs().max():.2f}; {incidents.height} incidents; stage {took:.1f} s"
    )
    for row in incidents.sort("start_day").iter_rows(named=True):
        print(f"  {row['severity']:<6} {row['description']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--online-retail", help="path of the UCI Online Retail sample CSV")
    args = parser.parse_args()
    if args.online_retail:
        online_retail(args.online_retail)

    recall = {d: [] for d in anomalies.evaluation.DETECTORS}
    delay = {d: [] for d in anomalies.evaluation.DETECTORS}
    false_planted = {d: [] for d in anomalies.evaluation.DETECTORS}
    false_clean = {d: [] for d in anomalies.evaluation.DETECTORS}
    by_kind: dict[str, list[int]] = {}
    max_score, planted_total = 0.0, 0
    scale_frames, scale_truth = None, None
    print(f"worlds: {args.users:,} users x {args.days} days, seeds 0..{args.seeds - 1}")
    for seed in range(args.seeds):
        for planted in (True, False):
            t0 = time.perf_counter()
            spec = WorldSpec(
                users=args.users, days=args.days, seed=seed, start_date=START, anomalies=planted
            )
            world = generate_world(spec)
            frames = trend_frames(world.events, world.pages, world.personas)
            history, incidents, scores = anomaly_stage(frames, world.anomalies)
            max_score = max(max_score, float(history["score"].abs().max()))
            took = time.perf_counter() - t0
            if planted:
                scale_frames, scale_truth = frames, world.anomalies
                for row in scores.filter(pl.col("kind") == "overall").iter_rows(named=True):
                    recall[row["detector"]].append(row["recall"])
                    false_planted[row["detector"]].append(row["false_incidents_per_30_days"])
                    if row["detected"]:
                        delay[row["detector"]].append(row["mean_days_to_detect"])
                ours = scores.filter(
                    (pl.col("detector") == "ensemble") & (pl.col("kind") != "overall")
                )
                for row in ours.iter_rows(named=True):
                    got = by_kind.setdefault(row["kind"], [0, 0])
                    got[0], got[1] = got[0] + row["detected"], got[1] + row["injected"]
                planted_total += world.anomalies.height
                print(
                    f"  seed {seed} planted: {world.anomalies.height} planted, "
                    f"{incidents.height} incidents, recall {recall['ensemble'][-1]:.2f} "
                    f"(baseline {recall['rolling_3sigma'][-1]:.2f})  [{took:.0f} s]",
                    flush=True,
                )
            else:
                rates = anomalies.false_incident_rate(history, SETTINGS)
                for detector, rate in rates.items():
                    false_clean[detector].append(rate)
                print(
                    f"  seed {seed} clean:   {incidents.height} incidents, "
                    f"{rates['ensemble']:.2f} per 30 days "
                    f"(baseline {rates['rolling_3sigma']:.2f})  [{took:.0f} s]",
                    flush=True,
                )

    print(f"\nincident level over every scope and metric, {args.seeds} seeds (mean, min..max):")
    for detector, name in (("ensemble", "detector"), ("rolling_3sigma", "rolling 3-sigma")):
        print(f"  {name}:")
        print(f"    recall of planted incidents       {spread(recall[detector])}")
        print(f"    days to detect (caught ones)      {spread(delay[detector])}")
        print(f"    false incidents / 30 d (planted)  {spread(false_planted[detector])}")
        print(f"    false incidents / 30 d (clean)    {spread(false_clean[detector])}")
    print(
        f"  detector recall by kind ({planted_total} planted in all): "
        + ", ".join(f"{kind} {got}/{total}" for kind, (got, total) in sorted(by_kind.items()))
    )
    print(f"  largest |score| in any anomaly_history: {max_score:.2f} (bound 50)")

    print("\nsmall sites, six months, checkout fails for 40% of buyers for 14 days (5 seeds):")
    for users in (220, 600):
        caught = 0
        for seed in range(11, 16):
            sessions, verdict, top = small_site(users, seed)
            caught += not verdict.startswith("MISSED")
            print(
                f"  {users} users, {sessions:.0f} sessions/day, seed {seed}: {verdict}; "
                f"max |score| {top:.1f}",
                flush=True,
            )
        print(f"  {users} users: caught {caught}/5")

    # The stage at the scale of 10M events: same days and scopes, every count x5.
    ratios = ("conversion_rate", "bounce_rate", "mean_session_duration_s", "pages_per_session")
    counts = [c for c in TREND_COLUMNS if c not in ratios]
    scaled = {
        "daily": scale_frames["daily"].with_columns([pl.col(c) * 5 for c in counts]),
        "segments": scale_frames["segments"].with_columns([pl.col(c) * 5 for c in counts]),
        "funnel": scale_frames["funnel"].with_columns(pl.col("sessions") * 5),
        "funnel_segments": scale_frames["funnel_segments"].with_columns(pl.col("sessions") * 5),
    }
    rows = sum(f.height for f in scaled.values())
    t0 = time.perf_counter()
    history, incidents, _ = anomaly_stage(scaled, scale_truth)
    took = time.perf_counter() - t0
    print(
        f"\nanomaly stage at the scale of 10M events (synthesized inputs: a {args.users:,}-user "
        f"world's trend tables, counts x5; {rows:,} input rows, "
        f"{history.select('dimension', 'dimension_value', 'metric').n_unique()} series, "
        f"{history.height:,} scored points): {took:.2f} s (target < 20 s); "
        f"{incidents.height} incidents; max |score| {history['score'].abs().max():.2f}"
    )


if __name__ == "__main__":
    main()
