"""Benchmark: our recommenders beside textbook implementations on a public implicit-feedback log.

    .venv/bin/python bench/bench_recs_public.py [--ratings PATH] [--cache-dir DIR]
        [--min-rating 0] [--test-share 0.2] [--seed 0] [--ease-lambda 500] [--k 10]

Data: MovieLens ml-latest-small (GroupLens; 100,836 ratings, 610 users, 9,742 movies; "may
redistribute ... under these same license conditions", see its README.txt). It is never
committed. ``--ratings PATH`` reads a ratings.csv you already have (a copy is in GitHub repo
``AjiLeight/movielens-recommendation-tries``, path ``ml-latest-small/ratings.csv``); without it
the file is downloaded once from that repository into ``--cache-dir`` (default
``~/.cache/ubap/movielens``, outside the repository). That copy ends with one fake row
``999,999999,5.0,...`` without a newline; rows with an unknown movie id or a rating outside
0.5..5 are dropped and counted.

Implicit feedback: every rating is one interaction (``--min-rating 0``, the default), or only
ratings >= ``--min-rating`` (4 is the usual "liked" cut). Split: for every user, a seeded random
``--test-share`` of their interactions is held out (at least one when they have two or more).
Each method ranks every movie the user has no training interaction with; NDCG@k (binary
relevance) and recall@k (hits / held-out items) are averaged over users with a held-out item.

Ours: the events go into DuckDB as one page_view per interaction and run through
``ubap_assets.core.recommend`` exactly as the pipeline does (load_interactions -> binary strength,
no decay -> fit -> the evaluation's scorer and exclusion policy). Textbook: plain numpy written
here from the papers — popularity (count of users), item-kNN (cosine, each target item's 40
nearest items, Sarwar et al. 2001), user-kNN (cosine, 50 nearest users), EASE (Steck 2019,
B = I - P / diag(P), P = (X'X + lambda I)^-1). Target: |ours - textbook| <= 0.005 NDCG@k.
"""

import argparse
import io
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from ubap_assets.core import recommend
from ubap_assets.core.daily import build_user_page_daily
from ubap_assets.core.recommend import scoring

SOURCE_URL = (
    "https://raw.githubusercontent.com/AjiLeight/movielens-recommendation-tries/"
    "HEAD/ml-latest-small/ratings.csv"
)
DEFAULT_CACHE = Path.home() / ".cache" / "ubap" / "movielens"
METHODS = ("global_popularity", "item_knn", "user_knn", "ease")
TOLERANCE = 0.005


def ratings_file(path: str | None, cache_dir: Path) -> Path:
    """The ratings.csv to read: the given path, or a cached download (outside the repo)."""
    if path:
        return Path(path)
    cached = cache_dir / "ratings.csv"
    if not cached.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        print(f"downloading {SOURCE_URL} -> {cached}")
        with urllib.request.urlopen(SOURCE_URL, timeout=120) as response:  # noqa: S310
            cached.write_bytes(response.read())
    return cached


def load_ratings(path: Path, min_rating: float) -> pl.DataFrame:
    """user, item, ts rows of the interactions kept; malformed rows dropped and counted."""
    text = path.read_text()
    raw = pl.read_csv(io.StringIO(text), schema_overrides={"rating": pl.Float64})
    valid = raw.filter(
        pl.col("rating").is_between(0.5, 5.0)
        & (pl.col("movieId") < 999_999)
        & pl.col("timestamp").is_between(0, 4_000_000_000)
    )
    dropped = raw.height - valid.height
    kept = valid.filter(pl.col("rating") >= min_rating)
    print(
        f"ratings     {raw.height:,} rows read, {dropped} malformed dropped, {kept.height:,} kept "
        f"as interactions ({'every rating' if min_rating <= 0.5 else f'rating >= {min_rating}'})"
    )
    return kept.select(
        user=pl.col("userId").cast(pl.String),
        item=pl.col("movieId").cast(pl.String),
        ts=pl.col("timestamp"),
    ).unique(["user", "item"], keep="first")


def random_split(frame: pl.DataFrame, test_share: float, seed: int) -> tuple:
    """Per user, a seeded random ``test_share`` of the interactions held out."""
    rng = np.random.default_rng(seed)
    frame = frame.sort("user", "item").with_columns(draw=pl.Series(rng.random(frame.height)))
    ranked = frame.with_columns(
        order=pl.col("draw").rank("ordinal").over("user"), n=pl.len().over("user")
    )
    n_test = (pl.col("n") * test_share).round().clip(1) * (pl.col("n") >= 2)
    is_test = pl.col("order") <= n_test
    return ranked.filter(~is_test).drop("draw", "order", "n"), ranked.filter(is_test).select(
        "user", "item"
    )


# ---------------------------------------------------------------- ours, through the core code
def ours(train: pl.DataFrame, test: pl.DataFrame, args) -> dict[str, dict[str, np.ndarray]]:
    items = train["item"].unique().sort()
    pages = pl.DataFrame(
        {
            "page_id": items,
            "title": items,
            "description": "",
            "category": "movie",
            "page_type": "product",
        }
    )
    params = recommend.RecommenderParams(
        k=args.k,
        strength="binary",
        half_life_days=None,
        ease_lambda=args.ease_lambda,
        event_weights={"page_view": 1.0},
        exclude="engaged",
        use_segments=False,
    )
    events = train.select(
        event_id=pl.concat_str("user", pl.lit(":"), "item"),
        user_id="user",
        session_id="user",
        event_ts=pl.from_epoch("ts", time_unit="s"),
        event_type=pl.lit("page_view"),
        page_id="item",
    )
    con = duckdb.connect()
    con.register("_events", events)
    con.execute("CREATE TABLE events AS SELECT * FROM _events")
    build_user_page_daily(con)  # the recommender reads the daily (user, page) counts
    end = recommend.data_end(con)
    started = time.perf_counter()
    catalogue = recommend.build_catalogue(pages, None, params)
    frame = recommend.load_interactions(con, None, end, params)
    model = recommend.fit(
        catalogue, recommend.build_interactions(frame, catalogue, "binary"), params
    )
    variants = {method: (method, None) for method in METHODS}
    scores = scoring.score_window(
        model, test.rename({"user": "user_id", "item": "page_id"}), variants, args.k
    )
    print(
        f"ours        {time.perf_counter() - started:6.1f} s (fit + score, {scores.n_users} users)"
    )
    return {
        m: {"ndcg": scores.per_user[m]["ndcg"], "recall": scores.per_user[m]["recall"]}
        for m in METHODS
    }


# ---------------------------------------------------------------- textbook, plain numpy
def textbook(train: pl.DataFrame, test: pl.DataFrame, args) -> dict[str, dict[str, np.ndarray]]:
    started = time.perf_counter()
    users = np.array(sorted(set(train["user"].to_list())))
    items = np.array(sorted(set(train["item"].to_list())))
    user_of = {u: i for i, u in enumerate(users)}
    item_of = {m: j for j, m in enumerate(items)}
    x = np.zeros((len(users), len(items)))
    for u, m in zip(train["user"].to_list(), train["item"].to_list(), strict=True):
        x[user_of[u], item_of[m]] = 1.0
    held = np.zeros_like(x, dtype=bool)
    for u, m in zip(test["user"].to_list(), test["item"].to_list(), strict=True):
        if u in user_of and m in item_of:
            held[user_of[u], item_of[m]] = True
    evaluated = np.flatnonzero(held.any(axis=1))  # same users as ours: train history + held out

    def cosine_rows(matrix: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        return unit @ unit.T

    def keep_nearest(similarity: np.ndarray, n: int) -> np.ndarray:
        """Per column (the item or user being scored), its n most similar others."""
        similarity = similarity.copy()
        np.fill_diagonal(similarity, 0.0)
        cut = np.sort(similarity, axis=0)[-n, :]
        return np.where(similarity >= cut[None, :], similarity, 0.0)

    scores = {}
    scores["global_popularity"] = np.broadcast_to(x.sum(axis=0), x.shape)
    scores["item_knn"] = x @ keep_nearest(cosine_rows(x.T), 40)
    user_similarity = keep_nearest(cosine_rows(x), 50)  # column v: v's 50 nearest users
    scores["user_knn"] = user_similarity.T @ x
    p = np.linalg.inv(x.T @ x + args.ease_lambda * np.eye(len(items)))
    scores["ease"] = x @ (np.eye(len(items)) - p / np.diag(p))
    result = {}
    for method, score in scores.items():
        ranked = np.where(x[evaluated] > 0, -np.inf, score[evaluated])
        top = np.argsort(-ranked, axis=1, kind="stable")[:, : args.k]
        result[method] = ndcg_recall(top, held[evaluated], args.k)
    print(f"textbook    {time.perf_counter() - started:6.1f} s ({len(evaluated)} users)")
    return result


def ndcg_recall(top: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    hits = np.take_along_axis(relevant, top, axis=1).astype(float)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    n_relevant = relevant.sum(axis=1)
    ideal = np.array([discount[: min(n, k)].sum() for n in n_relevant])
    return {"ndcg": (hits * discount).sum(axis=1) / ideal, "recall": hits.sum(axis=1) / n_relevant}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", help="path to ml-latest-small ratings.csv")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--min-rating", type=float, default=0.0)
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ease-lambda", type=float, default=500.0)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    frame = load_ratings(ratings_file(args.ratings, args.cache_dir), args.min_rating)
    train, test = random_split(frame, args.test_share, args.seed)
    print(f"split       {train.height:,} train / {test.height:,} held out (seed {args.seed})")
    print(f"started     {datetime.now():%H:%M:%S}")
    mine = ours(train, test, args)
    theirs = textbook(train, test, args)
    k = args.k
    print(
        f"\n{'method':<18} {'NDCG@' + str(k) + ' ours':>14} {'textbook':>9} {'diff':>8} "
        f"{'recall@' + str(k) + ' ours':>15} {'textbook':>9} {'diff':>8}  within {TOLERANCE}"
    )
    worst = 0.0
    for method in METHODS:
        a, b = mine[method], theirs[method]
        if len(a["ndcg"]) != len(b["ndcg"]):
            raise SystemExit(f"{method}: {len(a['ndcg'])} users ours vs {len(b['ndcg'])} textbook")
        n_ours, n_book = a["ndcg"].mean(), b["ndcg"].mean()
        r_ours, r_book = a["recall"].mean(), b["recall"].mean()
        worst = max(worst, abs(n_ours - n_book))
        print(
            f"{method:<18} {n_ours:14.4f} {n_book:9.4f} {n_ours - n_book:+8.4f} "
            f"{r_ours:15.4f} {r_book:9.4f} {r_ours - r_book:+8.4f}  "
            f"{'yes' if abs(n_ours - n_book) <= TOLERANCE else 'NO'}"
        )
    print(f"\nlargest |NDCG@{k} difference| {worst:.4f} (target <= {TOLERANCE})")


if __name__ == "__main__":
    main()
