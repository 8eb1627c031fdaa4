"""Run the whole graph on a real event log and print what a user would see.

    .venv/bin/python bench/bench_real_logs.py --source DIR --mapping M [--pages FILE]
        [--start YYYY-MM-DD] [--last-day YYYY-MM-DD] [--max-reject-share 0.05] [--keep DIR]

It needs no network. Without ``--start`` / ``--last-day`` the day range is the data's own (read
once with the Dagster-free ingester). The graph runs in a subprocess (``python -m
ubap_assets.materialize``) with a private data dir and DAGSTER_HOME (a temp dir, or ``--keep``),
so it never touches ``data/``. Then it prints, from the published snapshot (and the warehouse for
what the snapshot lacks): rows loaded vs rejected and the top reject reasons, anomaly flags and the
largest |score|, scored vs skipped scopes, model metrics, the recommendation evaluation, the share
of served recommendations the user already interacted with, the share of users with 20+ events
told "no history", the summary text, and every failed step or check with its error.

Real logs it was tried on (none is committed; fetch the repository and copy the file):

- MovieLens ml-latest-small (GroupLens; "may redistribute ... under these same license
  conditions", see its README.txt): 100,836 ratings, 610 users, 9,742 movies, 1996-03-29 ..
  2018-09-24. Copy in GitHub repo ``AjiLeight/movielens-recommendation-tries`` (Apache-2.0),
  paths ``ml-latest-small/ratings.csv`` and ``ml-latest-small/movies.csv``; that copy appends one
  fake row ``999,999999,5.0,...`` without a newline at the end of ratings.csv: drop it. Mapping
  (JSON)::

      {"columns": {"user_id": "userId", "event_ts": "timestamp", "event_type": "rating",
                   "page_id": "movieId", "event_id": {"concat": ["userId", "movieId"]}},
       "event_types": {"5.0": "purchase"}, "unmapped_event_types": "page_view",
       "timestamp_format": "epoch_s"}

  (a 5-star rating stands for a conversion, any other rating for a page view), and a pages file
  made from movies.csv: ``page_id, title, category`` (first genre), ``description`` (title and
  genres), ``page_type = product``. The full range is 8,215 daily partitions; ``--start
  2015-01-01`` keeps the last 3.7 years.
- REES46 multi-category store, October 2019 (Kaggle "eCommerce behavior data from multi category
  store", REES46 Open CDP; no licence stated in the copy): the first 17,434 rows (2019-10-01
  00:00-02:50 UTC, one day; the file's last line is cut mid-row) as ``2019-Oct.csv`` in GitHub
  repo ``ibrhmspl/Team11_Customer_Segmentation`` (no licence file). Built-in mapping
  ``ecommerce``.
- UCI Online Retail (Chen et al. 2012, UCI ML repository, CC BY 4.0): a 30,000-row random sample
  of the 541,909 invoice lines (2010-12-01 .. 2011-12-09, 3,569 customers; 2,000 lines without a
  customer) as ``OnlineRetail.csv`` in GitHub repo
  ``linumolk/Customer-Segmentation-RFM-Analysis-using-SQL-and-Power-BI`` (no licence file).
  Purchase-only. Mapping: ``user_id`` CustomerID, ``event_ts`` InvoiceDate
  (``%Y-%m-%d %H:%M:%S``, Europe/London), ``event_type {"value": "purchase"}``, ``session_id``
  InvoiceNo, ``page_id`` StockCode, ``page_title`` Description, ``revenue`` and ``page_price``
  UnitPrice, ``country`` Country, ``event_id`` InvoiceNo:StockCode. 6.7% of its rows have no
  customer, above the default 5% reject limit: ``--max-reject-share 0.1`` to get past ingestion.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from _util import free_port

REPO = Path(__file__).resolve().parent.parent


def data_range(source: str, mapping: str | None, pages: str | None) -> tuple[str, str]:
    """First and last event day of the source (UTC), read with the Dagster-free ingester."""
    from ubap_assets.core.ingest import ingest_files

    result = ingest_files(source, mapping, max_reject_share=1.0, pages_file=pages)
    if result.events.height == 0:
        raise SystemExit(f"no loadable events in {source}")
    first = result.events["event_ts"].min().date()
    last = result.events["event_ts"].max().date()
    return first.isoformat(), last.isoformat()


def run_graph(args, data_dir: Path, start: str, last: str) -> tuple[int, float, str]:
    home = data_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ)
    env.update(
        UBAP_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(home),
        UBAP_SOURCE=str(Path(args.source).resolve()),
        UBAP_START_DATE=start,
        UBAP_MAX_REJECT_SHARE=str(args.max_reject_share),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    env.pop("GEMINI_API_KEY", None)  # the deterministic summary: no network
    env["UBAP_SOURCE_MAPPING"] = args.mapping or ""
    if args.pages:
        env["UBAP_PAGES_FILE"] = str(Path(args.pages).resolve())
    url = f"http://127.0.0.1:{free_port()}"  # a private dagster dev, for this run only
    cmd = [sys.executable, "-m", "ubap_assets.materialize", "--start-dagster", "--url", url]
    cmd += ["--last-day", last]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=args.timeout
    )
    seconds = time.perf_counter() - started
    (data_dir / "materialize.log").write_text(proc.stdout + proc.stderr)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode, seconds, tail


def run_failures(data_dir: Path) -> tuple[list[str], list[str], dict[str, dict], list[str]]:
    """Failed steps (with the error), failed checks, the metadata of every materialization and
    the assets planned but never materialized (downstream of a failure)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(data_dir / "dagster"))
    runs = instance.get_runs(limit=1)
    if not runs:
        return ["no run recorded"], [], {}, []
    run_id = runs[0].run_id
    steps, checks, meta, planned = [], [], {}, set()
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = event.step_failure_data.error
            msg = (err.message if err else "?").strip().splitlines()
            steps.append(f"{event.step_key}: {msg[0][:300] if msg else '?'}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            if not data.passed:
                desc = (data.description or "").strip().splitlines()
                checks.append(
                    f"{data.asset_key.to_user_string()}.{data.check_name} "
                    f"[{data.severity.value}] {desc[0][:200] if desc else ''}"
                )
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            planned.add(event.asset_key.to_user_string())
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            meta[mat.asset_key.to_user_string()] = {
                k: getattr(v, "value", v) for k, v in mat.metadata.items()
            }
    return steps, checks, meta, sorted(planned - set(meta))


def open_db(data_dir: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    """The published snapshot, read-only, with the warehouse attached as ``wh``."""
    pointer = data_dir / "snapshots" / "CURRENT"
    warehouse = data_dir / "warehouse.duckdb"
    if pointer.exists():
        name = pointer.read_text().strip()
        path = Path(name) if Path(name).is_absolute() else data_dir / "snapshots" / name
        if not path.suffix:
            path = path.with_suffix(".duckdb")
        con = duckdb.connect(str(path), read_only=True)
        where = f"snapshot {path.name}"
    else:
        con = duckdb.connect(":memory:")
        where = "NO SNAPSHOT PUBLISHED: figures from the warehouse"
    if warehouse.exists():
        con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    return con, where


def table(con, name: str) -> str | None:
    """Qualified name of a table: the snapshot's, else the warehouse's, else None."""
    for schema_filter, qualified in (
        ("table_catalog <> 'wh'", name),
        ("table_catalog = 'wh'", f"wh.main.{name}"),
    ):
        found = con.execute(
            f"SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND "
            f"{schema_filter}",
            [name],
        ).fetchone()[0]
        if found:
            return qualified
    return None


def q(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchall()


def report(con, where: str, meta: dict[str, dict]) -> None:
    print(f"\nFigures from the {where}")
    # The snapshot keeps only each user's recent events: count the warehouse's.
    warehouse_events = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = 'wh' AND table_name = 'events'"
    ).fetchone()[0]
    ev = "wh.main.events" if warehouse_events else table(con, "events")
    rej = table(con, "event_rejects")
    if ev:
        n, users, pages, d0, d1 = q(
            con,
            f"SELECT count(*), count(DISTINCT user_id), count(DISTINCT page_id), "
            f"min(event_ts)::DATE, max(event_ts)::DATE FROM {ev}",
        )[0]
        print(f"  events loaded       {n:,} ({users:,} users, {pages:,} pages, {d0} .. {d1})")
        types = q(con, f"SELECT event_type, count(*) FROM {ev} GROUP BY 1 ORDER BY 2 DESC")
        print("  event types         " + ", ".join(f"{t} {c:,}" for t, c in types))
    if rej:
        nrej = q(con, f"SELECT count(*) FROM {rej}")[0][0]
        print(f"  rows rejected       {nrej:,}")
        for reason, c in q(
            con,
            f"SELECT split_part(reason, ':', 1), count(*) FROM {rej} GROUP BY 1 ORDER BY 2 DESC "
            "LIMIT 5",
        ):
            print(f"      {c:>8,}  {reason}")
    stats = meta.get("events", {})
    keys = ("rows_read", "rows_valid", "rows_rejected", "rows_ignored", "duplicates")
    shown = {k: stats[f"ingest_{k}"] for k in keys if f"ingest_{k}" in stats}
    if shown:
        print(f"  ingest stats        {shown}")

    ah, an = table(con, "anomaly_history"), table(con, "anomalies")
    if ah:
        total, flagged, maxabs, scored = q(
            con,
            f"SELECT count(*), count(*) FILTER (WHERE is_anomaly), max(abs(score)), "
            f"count(*) FILTER (WHERE has_baseline) FROM {ah}",
        )[0]
        print(
            f"  anomaly_history     {total:,} points, {scored:,} with a baseline, "
            f"{flagged:,} flagged, max |score| {maxabs if maxabs is None else f'{maxabs:.3g}'}"
        )
        big = q(con, f"SELECT count(*) FROM {ah} WHERE abs(score) > 50")[0][0]
        print(f"  |score| > 50        {big:,} points")
        for dim, value, pts, base, flags in q(
            con,
            f"SELECT dimension, dimension_value, count(*), count(*) FILTER (WHERE has_baseline), "
            f"count(*) FILTER (WHERE is_anomaly) FROM {ah} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 40",
        ):
            state = "scored" if base else "SKIPPED (no baseline)"
            print(f"      {dim}={value}: {pts} points, {state}, {flags} flagged")
        worst = q(
            con,
            f"SELECT day, dimension, dimension_value, metric, value, expected, score FROM {ah} "
            "WHERE is_anomaly ORDER BY abs(score) DESC LIMIT 3",
        )
        for row in worst:
            print(f"      worst: {row}")
    if an:
        print(f"  anomalies (latest)  {q(con, f'SELECT count(*) FROM {an}')[0][0]:,} rows")
    for asset in ("anomaly_history", "anomalies", "anomaly_scores"):
        notes = meta.get(asset, {}).get("notes")
        if notes:
            print(f"  {asset} notes: {str(notes).strip()[:400]}")

    mm = table(con, "model_metrics")
    if mm:
        print("  model_metrics (test window: the model in service, or why none)")
        for task, model, status, n, pos, auc, lo, hi, prauc, thr, note in q(
            con,
            f"SELECT task, model, status, n, positives, roc_auc, roc_auc_ci_low, "
            f"roc_auc_ci_high, pr_auc, threshold, note FROM {mm} "
            f"WHERE split = 'test' AND (is_best OR status <> 'ok') ORDER BY task",
        ):
            if status != "ok":
                print(f"      {task:<10} {status}: {note}")
                continue
            print(
                f"      {task:<10} {model:<20} n {n} positives {pos} ROC-AUC {auc:.3f} "
                f"[{lo:.3f}, {hi:.3f}] PR-AUC {prauc:.3f} threshold {thr:.4g}"
            )
    else:
        print("  model_metrics       MISSING")
    up = table(con, "user_predictions")
    if up:
        n, risk, unscored = q(
            con,
            f"SELECT count(*), count(*) FILTER (WHERE at_risk), "
            f"count(*) FILTER (WHERE at_risk_probability IS NULL) FROM {up}",
        )[0]
        print(
            f"  at risk             {risk:,} of {n:,} users ({risk / max(n, 1):.1%}); "
            f"{unscored:,} without an at-risk score"
        )
        reasons = q(
            con,
            f"SELECT at_risk_reason_1, count(*) FROM {up} WHERE at_risk "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
        )
        if reasons:
            print(f"      commonest reason shown to at-risk users: {reasons[0][0]!r}")

    re_ = table(con, "rec_evaluation")
    if re_:
        rows = {
            r[0]: r[1:]
            for r in q(
                con,
                f"SELECT method, ndcg_at_k, ndcg_ci_low, ndcg_ci_high, coverage, users_evaluated, "
                f"k, status, is_served, note FROM {re_}",
            )
        }
        for method in ("random", "global_popularity", "ease", "hybrid"):
            if method in rows:
                ndcg, low, high, cov, users, k, status, served, note = rows[method]
                figures = (
                    f"NDCG@{k} {ndcg:.4f} [{low:.4f}, {high:.4f}] coverage {cov:.3f}"
                    if status == "ok"
                    else status
                )
                print(
                    f"  rec_eval {method:<18} {figures} users {users}"
                    + (" (served)" if served else "")
                )
        print(f"      note: {note}")
    else:
        print("  rec_evaluation      MISSING")
    ur = table(con, "user_recommendations")
    if ur and ev:
        served, seen = q(
            con,
            f"SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {ev} e "
            f"WHERE e.user_id = r.user_id AND e.page_id = r.page_id)) FROM {ur} r",
        )[0]
        print(
            f"  served recs already interacted with: {seen:,} of {served:,} "
            f"({seen / max(served, 1):.1%})"
        )
        heavy, cold = q(
            con,
            f"WITH n AS (SELECT user_id, count(*) AS c FROM {ev} GROUP BY 1 HAVING count(*) >= 20),"
            f" src AS (SELECT user_id, bool_or(source IN ('segment_popularity', "
            f"'global_popularity')) AS cold FROM {ur} GROUP BY 1) "
            f"SELECT count(*), count(*) FILTER (WHERE src.cold) FROM n JOIN src USING (user_id)",
        )[0]
        print(
            f"  users with 20+ events told 'no history': {cold:,} of {heavy:,} "
            f"({cold / max(heavy, 1):.1%})"
        )
        sources = q(con, f"SELECT source, count(*) FROM {ur} GROUP BY 1 ORDER BY 2 DESC")
        print("      served rows by source: " + ", ".join(f"{s} {c:,}" for s, c in sources))
    su = table(con, "summary")
    if su:
        for mode, text in q(con, f"SELECT mode, narrative FROM {su} LIMIT 1"):
            print(f"  summary ({mode}):")
            for line in text.strip().splitlines():
                print(f"      {line}")
    else:
        print("  summary             MISSING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="folder, glob or file of event logs")
    parser.add_argument("--mapping", help="built-in mapping name or a .json/.toml mapping file")
    parser.add_argument("--pages", help="optional page catalogue (UBAP_PAGES_FILE)")
    parser.add_argument("--start", help="first day partition (default: the data's first day)")
    parser.add_argument("--last-day", help="last day partition (default: the data's last day)")
    parser.add_argument("--max-reject-share", type=float, default=0.05)
    parser.add_argument("--keep", help="data dir to keep (default: a temp dir, removed)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the graph run")
    args = parser.parse_args(argv)
    if not args.source:  # `make bench` runs every script bare: this one needs a log to read
        print("no --source given: nothing to run (see the docstring for real logs to try)")
        return 0

    first, last = args.start, args.last_day
    if first is None or last is None:
        d0, d1 = data_range(args.source, args.mapping, args.pages)
        first, last = first or d0, last or d1
    data_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ubap-real-"))
    if args.keep and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"source {args.source} mapping {args.mapping or 'native'} days {first} .. {last}")
    try:
        rc, seconds, tail = run_graph(args, data_dir, first, last)
        print(f"graph run: exit {rc} in {seconds:.1f} s\n  {tail}")
        steps, checks, meta, missing = run_failures(data_dir)
        for s in steps:
            print(f"  FAILED step  {s}")
        if missing:
            print(f"  not materialized: {', '.join(missing)}")
        for c in checks:
            print(f"  failed check {c}")
        con, where = open_db(data_dir)
        with con:
            report(con, where, meta)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
