"""Benchmark: hybrid recommendations for 100k users over a 200-page catalogue.

Prints seconds per stage and the peak RSS of the process. Target: under 60 s, under 4 GB.

    .venv/bin/python bench/bench_recs.py [--users 100000] [--pages 200] [--hashing] [--eval]

Events are generated here with vectorized numpy (about 25 per user, 70% in the user's favourite
category) and loaded into an in-memory DuckDB, so the timing covers the same path as the asset:
SQL aggregation of implicit feedback -> sparse matrices -> fit -> top-k for every user.
"""

import argparse
import resource
import time
from datetime import datetime

import duckdb
import numpy as np
import polars as pl

from ubap_assets.core import recommend
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.daily import build_user_page_daily
from ubap_assets.core.recommend import evaluation
from ubap_assets.core.schema import EVENT_TYPES
from ubap_assets.lib.embedder import HashingEmbedder, SentenceEmbedder

# Share of each event type, in the order of schema.EVENT_TYPES.
EVENT_TYPE_SHARES = np.array([0.55, 0.15, 0.12, 0.05, 0.07, 0.035, 0.025])


def padded_pages(n_pages: int) -> pl.DataFrame:
    """The shop's catalogue, padded with extra product pages up to ``n_pages``."""
    base = page_catalogue()
    extra = n_pages - base.height
    if extra <= 0:
        return base.head(n_pages)
    cats = base.filter(pl.col("page_type") == "product")["category"].unique().sort().to_list()
    pad = pl.DataFrame(
        {
            "page_id": [f"x{i:04d}" for i in range(extra)],
            "url": [f"/extra/{i}" for i in range(extra)],
            "title": [f"{cats[i % len(cats)]} accessory {i}" for i in range(extra)],
            "description": [
                f"An accessory for {cats[i % len(cats)].lower()}" for i in range(extra)
            ],
            "category": [cats[i % len(cats)] for i in range(extra)],
            "page_type": ["product"] * extra,
            "price": [19.0] * extra,
        }
    )
    return pl.concat([base, pad.cast(base.schema)])


def events(pages: pl.DataFrame, users: int, seed: int, end: datetime) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cats = pages["category"].to_numpy()
    names = np.unique(cats)
    by_cat = [np.flatnonzero(cats == c) for c in names]
    per_user = rng.poisson(25, users) + 1
    n = int(per_user.sum())
    user = np.repeat(np.arange(users), per_user)
    fav = rng.integers(0, len(names), users)[user]
    in_fav = rng.random(n) < 0.7
    page = rng.integers(0, len(pages), n)
    for ci, pool in enumerate(by_cat):  # one vectorized draw per category, not per user
        rows = np.flatnonzero(in_fav & (fav == ci))
        page[rows] = pool[rng.zipf(1.6, len(rows)).clip(1, len(pool)) - 1]
    seconds = rng.integers(0, 60 * 86400, n)
    return pl.DataFrame(
        {
            "event_id": np.arange(n),
            "user_id": user,
            "session_id": user * 100 + seconds // 3600 % 100,
            "event_ts": np.datetime64(end) - seconds.astype("timedelta64[s]"),
            "event_type": pl.Series(list(EVENT_TYPES)).gather(
                rng.choice(len(EVENT_TYPES), n, p=EVENT_TYPE_SHARES)
            ),
            "page_id": pages["page_id"].gather(page),
        }
    ).with_columns(
        pl.col("event_id").cast(pl.String),
        pl.concat_str(pl.lit("u"), pl.col("user_id").cast(pl.String)).alias("user_id"),
        pl.concat_str(pl.lit("s"), pl.col("session_id").cast(pl.String)).alias("session_id"),
        pl.col("event_ts").cast(pl.Datetime("us")),
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hashing", action="store_true", help="hashing embedder instead of MiniLM")
    parser.add_argument("--eval", action="store_true", help="also time rec_evaluation")
    args = parser.parse_args()

    end = datetime(2026, 3, 1)
    t = time.perf_counter()
    pages = padded_pages(args.pages)
    frame = events(pages, args.users, args.seed, end)
    con = duckdb.connect()
    con.register("_ev", frame)
    con.execute("CREATE TABLE events AS SELECT * FROM _ev")
    con.unregister("_ev")
    build_user_page_daily(con)  # the recommender reads the daily (user, page) counts
    del frame
    print(
        f"data        {time.perf_counter() - t:6.2f} s  "
        f"({args.users:,} users, {len(pages)} pages, "
        f"{con.execute('SELECT count(*) FROM events').fetchone()[0]:,} events)"
    )

    t = time.perf_counter()
    embedder = HashingEmbedder() if args.hashing else SentenceEmbedder()
    texts = recommend.page_texts(pages)
    embeddings = recommend.embeddings_frame(
        texts, embedder.embed(texts["text"].to_list()), embedder.model_id()
    )
    print(f"embed       {time.perf_counter() - t:6.2f} s  ({embedder.model_id()}, load included)")
    rss_before = peak_rss_mb()

    params = recommend.RecommenderParams()
    total = time.perf_counter()
    t = time.perf_counter()
    data_end = recommend.data_end(con)
    interactions = recommend.load_interactions(
        con, recommend.history_start(data_end, params), data_end, params
    )
    print(
        f"interactions{time.perf_counter() - t:6.2f} s  ({interactions.height:,} user-page pairs)"
    )
    t = time.perf_counter()
    catalogue = recommend.build_catalogue(pages, embeddings, params)
    model = recommend.fit(
        catalogue, recommend.build_interactions(interactions, catalogue, params.strength), params
    )
    print(f"fit         {time.perf_counter() - t:6.2f} s")
    t = time.perf_counter()
    users = pl.Series(np.arange(args.users)).cast(pl.String).str.replace(r"^", "u").to_numpy()
    lists = recommend.recommendation_lists(model, users, data_end)
    print(
        f"recommend   {time.perf_counter() - t:6.2f} s  ({lists.height:,} rows, "
        f"{lists['user_id'].n_unique():,} users)"
    )
    elapsed = time.perf_counter() - total
    print(f"TOTAL       {elapsed:6.2f} s  (interactions + fit + recommend; target < 60 s)")
    print(
        f"peak RSS    {peak_rss_mb():8.0f} MB (whole process incl. data and model; "
        f"{rss_before:.0f} MB before recommending; target < 4096 MB)"
    )
    assert lists.group_by("user_id").len()["len"].min() == params.k

    if args.eval:
        t = time.perf_counter()
        result = evaluation.run_evaluation(con, catalogue, params, None)
        print(
            f"evaluation  {time.perf_counter() - t:6.2f} s  "
            f"({result['users_evaluated'][0]:,} test users, {result['validation_users'][0]:,} "
            f"validation users, {result.height} methods, tuning grid included)"
        )
        print(
            result.select(
                "method",
                "status",
                "ndcg_at_k",
                "ndcg_ci_low",
                "ndcg_ci_high",
                "recall_at_k",
                "coverage",
                "validation_ndcg_at_k",
                "is_served",
            )
        )
        print(f"peak RSS    {peak_rss_mb():8.0f} MB")


if __name__ == "__main__":
    main()
