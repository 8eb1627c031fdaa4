"""User segments: K-means with k chosen by silhouette, Ward for comparison, canonical ids.

Dagster-free. Features are log1p-transformed and standardised. Silhouette is scored on a
seeded sample, and Ward (O(n^2) memory) is fitted on a sample and extended to every user by
the nearest Ward centroid, so the whole thing stays linear in the number of users.

Two steps, on two cadences (like the models, see core/cadence.py):

- :func:`fit_segments` (scaler, k, K-means centroids, Ward centres, names) runs on the features
  at the training boundary and is stored (:func:`fit_table`); it is refitted only when the
  boundary, the settings or the data before the boundary change (:meth:`SegmentFit.serves`,
  :func:`input_digest`).
- :func:`assign_segments` puts every user of the features at the data end in the nearest
  stored centroid, every night.

Segment ids are canonical: numbered by segment size at the fit (largest first), ties by the
centroid, so they are a function of the fit alone, never of an earlier run.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ubap_assets.core.cadence import training_end
from ubap_assets.core.features import PROFILE_FEATURES, SEGMENT_FEATURES

MIN_USERS_PER_CLUSTER = 10
# Fewest days of history before a training boundary to fit on it; with less (the first days
# of a warehouse) the fit uses every day up to the data end instead.
MIN_FIT_DAYS = 7
# Users drawn into the 2-D user map per snapshot: enough to see the clusters' shapes, few
# enough for a scatter plot in a browser.
MAP_SAMPLE = 2000
# Keys typed as in user_segments (and every table: user_id is text), so the two join.
USER_MAP_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "segment_id": pl.Int64,
    "segment_name": pl.String,
    "x": pl.Float64,
    "y": pl.Float64,
}
# One row: the segments scored against the generator's personas (ground truth).
SEGMENT_SCORES_SCHEMA: dict[str, pl.DataType] = {
    "persona_ari": pl.Float64,
    "users_scored": pl.Int64,
    "segments": pl.Int64,
    "personas": pl.Int64,
    "note": pl.String,
}


class SegmentationError(ValueError):
    """The input cannot be segmented as asked (too few users for k, bad k range)."""


@dataclass
class SegmentFit:
    """What the clustering learnt, enough to label any user: the scaler, the K-means and Ward
    centroids (standardised space, row = segment id), the names and the quality scores; and
    what it was fitted on (cutoff, lookback, a digest of the input, the settings)."""

    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray
    ward_centroids: np.ndarray
    names: list[str]
    metrics: dict[str, float | int]
    k_scores: dict[int, float]
    cutoff: datetime | None = None
    lookback_days: int | None = None
    input_digest: str = ""
    settings: dict[str, int] = field(default_factory=dict)

    def serves(
        self, cutoff: datetime, lookback_days: int, input_digest: str, settings: dict[str, int]
    ) -> bool:
        """Whether this fit is the one a fit on these inputs would give (so no refit)."""
        return (
            self.cutoff == cutoff
            and self.lookback_days == lookback_days
            and self.input_digest == input_digest
            and self.settings == settings
        )

    def scaled(self, features: pl.DataFrame) -> np.ndarray:
        return (log_features(features) - self.mean) / self.scale

    def log_centroids(self) -> np.ndarray:
        return self.centroids * self.scale + self.mean


@dataclass
class SegmentationResult:
    segments: pl.DataFrame  # one row per user
    profiles: pl.DataFrame  # one row per segment
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    k_scores: dict[int, float] = field(default_factory=dict)  # k -> silhouette


def log_features(features: pl.DataFrame) -> np.ndarray:
    """The clustering's input before standardising: log1p of the non-negative SEGMENT_FEATURES."""
    x = features.select(
        pl.col(c).cast(pl.Float64).fill_null(0.0).clip(lower_bound=0.0) for c in SEGMENT_FEATURES
    ).to_numpy()
    return np.log1p(x)


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def _nearest(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each row's nearest centre (lowest index on a tie) and the distance to it."""
    distances = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=2)
    nearest = np.argmin(distances, axis=1).astype(np.int64)
    return nearest, distances[np.arange(len(x)), nearest]


def _canonical_order(labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Old cluster index -> canonical id: largest cluster first, ties by the centroid's
    coordinates, so the numbering depends on the clusters alone."""
    sizes = np.bincount(labels, minlength=len(centres))
    order = sorted(range(len(centres)), key=lambda c: (-int(sizes[c]), tuple(centres[c])))
    rank = np.empty(len(centres), dtype=np.int64)
    rank[order] = np.arange(len(centres))
    return rank


def fit_window(
    first_day: datetime, data_end: datetime, every_days: int, lookback_days: int
) -> tuple[datetime, int]:
    """The cutoff and lookback of the fit in service at ``data_end``: the training boundary
    (core/cadence.py), and the features' lookback capped at the days before it; the data end
    itself while fewer than MIN_FIT_DAYS days precede the boundary."""
    cutoff = training_end(data_end, every_days)
    if (cutoff - first_day).days < MIN_FIT_DAYS:
        cutoff = data_end
    available = (cutoff - first_day).days
    return cutoff, available if lookback_days <= 0 else min(lookback_days, available)


def _table(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"not a table name: {name!r}")
    return name


def input_digest(
    con: duckdb.DuckDBPyConnection,
    cutoff: datetime,
    lookback_days: int,
    user_daily: str = "user_daily",
    users: str = "users",
) -> str:
    """A fingerprint of everything the features at ``cutoff`` read (the user-days of the
    lookback and the users signed up before it): equal digests give equal features, so a
    stored fit serves until a late or re-ingested day before the cutoff changes them."""
    day = cutoff.date()
    row = con.execute(
        f"SELECT (SELECT count(*) || ':' || coalesce(sum(hash(d)), 0) "
        f"        FROM {_table(user_daily)} AS d WHERE day >= ? AND day < ?) "
        f"    || '/' || "
        f"    (SELECT count(*) || ':' || coalesce(sum(hash(u)), 0) "
        f"     FROM {_table(users)} AS u WHERE signup_date < ?)",
        [day - timedelta(days=lookback_days), day, day],
    ).fetchone()
    return str(row[0])


def _segment_means(features: pl.DataFrame, segment_id: np.ndarray, k: int) -> pl.DataFrame:
    """One row per segment id 0..k-1: users, share, buyer share and the PROFILE_FEATURES means
    (null for a segment nobody is in)."""
    means = [pl.col(c).cast(pl.Float64).mean().alias(c) for c in PROFILE_FEATURES]
    counted = (
        features.with_columns(segment_id=pl.Series(segment_id, dtype=pl.Int64))
        .group_by("segment_id")
        .agg(
            pl.len().cast(pl.Int64).alias("users"),
            (pl.col("purchases") > 0).mean().cast(pl.Float64).alias("buyer_share"),
            *means,
        )
    )
    every = pl.DataFrame({"segment_id": np.arange(k, dtype=np.int64)})
    return (
        every.join(counted, on="segment_id", how="left")
        .with_columns(pl.col("users").fill_null(0))
        .with_columns(share=pl.col("users") / max(features.height, 1))
        .sort("segment_id")
    )


def _overall(features: pl.DataFrame) -> dict[str, float]:
    means = [pl.col(c).cast(pl.Float64).mean().alias(c) for c in PROFILE_FEATURES]
    return features.select(
        (pl.col("purchases") > 0).mean().alias("buyer_share"),
        *means,
        pl.col("lookback_days").max().cast(pl.Float64).alias("lookback_days")
        if "lookback_days" in features.columns
        else pl.lit(28.0).alias("lookback_days"),
    ).row(0, named=True)


def _name_segments(profiles: pl.DataFrame, overall: dict[str, float]) -> list[str]:
    """A human-readable name per segment from how its profile differs from everybody's."""
    names = []
    for row in profiles.iter_rows(named=True):
        buyers, sessions = row["buyer_share"], row["sessions"]
        if row["bounce_rate"] >= 0.6 and row["pages_per_session"] < 2.0:
            name = "One-page bouncers"
        elif buyers >= 0.5 and sessions >= 1.5 * overall["sessions"]:
            name = "Loyal buyers"
        elif buyers >= max(0.25, 1.5 * overall["buyer_share"]):
            name = "Buyers"
        elif row["blog_share"] + row["help_share"] >= max(
            0.3, 1.5 * (overall["blog_share"] + overall["help_share"])
        ):
            name = "Researchers"
        elif sessions <= 0.5 * overall["sessions"] or row["recency_days"] >= 0.8 * overall.get(
            "lookback_days", 28
        ):
            name = "Dormant visitors"
        elif row["product_share"] >= overall["product_share"]:
            name = "Window shoppers"
        else:
            name = "Casual browsers"
        names.append(name)
    return _disambiguate(names, profiles, overall)


def _disambiguate(names: list[str], profiles: pl.DataFrame, overall: dict[str, float]) -> list[str]:
    """Segments that got the same name are told apart by how often and how deep they visit."""
    counts = {n: names.count(n) for n in names}
    out = []
    for name, row in zip(names, profiles.iter_rows(named=True), strict=True):
        if counts[name] > 1:
            often = "frequent" if row["sessions"] >= overall["sessions"] else "occasional"
            deep = (
                "long-visit"
                if row["pages_per_session"] >= overall["pages_per_session"]
                else "short-visit"
            )
            name = f"{name} ({often}, {deep})"
        out.append(name)
    seen: dict[str, int] = {}
    unique = []
    for name in out:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return unique


def fit_segments(features: pl.DataFrame, *, threads: int = 1, **kwargs) -> SegmentFit:
    """Fit the segmentation on ``features`` (one row per user).

    ``threads`` caps BLAS/OpenMP threads: on a shared 2-core machine more threads spin-wait
    and run several times slower. Other keyword arguments: see ``_fit_segments``.
    """
    with threadpool_limits(limits=threads):
        return _fit_segments(features, **kwargs)


def _fit_segments(
    features: pl.DataFrame,
    *,
    k_min: int = 3,
    k_max: int = 10,
    seed: int = 0,
    silhouette_sample: int = 3000,
    ward_sample: int = 3000,
    kmeans_sample: int = 30000,
) -> SegmentFit:
    if k_min < 2 or k_max < k_min:
        raise SegmentationError(f"k range must satisfy 2 <= k_min <= k_max (got {k_min}..{k_max})")
    n = features.height
    needed = k_min * MIN_USERS_PER_CLUSTER
    if n < needed:
        raise SegmentationError(
            f"too few users for k: {n} users but k_min={k_min} needs at least {needed} "
            f"({MIN_USERS_PER_CLUSTER} per cluster); load more users or lower k_min"
        )
    features = features.sort("user_id")  # the fit depends on the users, not on their order
    k_max = min(k_max, n // MIN_USERS_PER_CLUSTER)
    rng = np.random.default_rng(seed)
    x_log = log_features(features)
    scaler = StandardScaler().fit(x_log)
    x = scaler.transform(x_log)
    if np.allclose(x.std(axis=0), 0.0):
        raise SegmentationError("every user has identical features: nothing to segment")

    fit_idx = _sample(n, kmeans_sample, rng)
    sil_idx = _sample(n, silhouette_sample, rng)
    k_scores: dict[int, float] = {}
    fitted: dict[int, KMeans] = {}
    for k in range(k_min, k_max + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x[fit_idx])
        labels = km.predict(x[sil_idx])
        if len(np.unique(labels)) < 2:
            continue
        k_scores[k] = float(silhouette_score(x[sil_idx], labels, random_state=seed))
        fitted[k] = km
    if not k_scores:
        raise SegmentationError("K-means found fewer than two distinct clusters for every k")
    k = max(k_scores, key=k_scores.get)
    km = KMeans(n_clusters=k, init=fitted[k].cluster_centers_, n_init=1, random_state=seed).fit(x)
    rank = _canonical_order(km.labels_, km.cluster_centers_)
    centroids = np.empty_like(km.cluster_centers_)
    centroids[rank] = km.cluster_centers_
    labels, _ = _nearest(x, centroids)

    # Ward on a sample, extended to everybody by the nearest Ward centroid.
    ward_idx = _sample(n, ward_sample, rng)
    ward_fit = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[ward_idx])
    ward_centres = np.vstack([x[ward_idx][ward_fit == c].mean(axis=0) for c in range(k)])
    ward_rank = _canonical_order(_nearest(x, ward_centres)[0], ward_centres)
    ward_centroids = np.empty_like(ward_centres)
    ward_centroids[ward_rank] = ward_centres
    ward, _ = _nearest(x, ward_centroids)

    metrics: dict[str, float | int] = {
        "k": k,
        "silhouette": k_scores[k],
        "davies_bouldin": float(davies_bouldin_score(x[sil_idx], labels[sil_idx]))
        if len(np.unique(labels[sil_idx])) > 1
        else 0.0,
        "ward_silhouette": float(silhouette_score(x[sil_idx], ward[sil_idx], random_state=seed))
        if len(np.unique(ward[sil_idx])) > 1
        else 0.0,
        "ward_agreement_ari": float(adjusted_rand_score(labels, ward)),
        "users": n,
    }
    names = _name_segments(_segment_means(features, labels, k), _overall(features))
    return SegmentFit(
        mean=scaler.mean_.copy(),
        scale=scaler.scale_.copy(),
        centroids=centroids,
        ward_centroids=ward_centroids,
        names=names,
        metrics=metrics,
        k_scores=k_scores,
        settings={"k_min": k_min, "k_max": k_max, "seed": seed},
    )


def assign_segments(
    features: pl.DataFrame, fit: SegmentFit, run_id: str = ""
) -> SegmentationResult:
    """Label every user of ``features`` with the nearest centroid of ``fit`` (and the nearest
    Ward centroid); profile the segments as labelled. Cheap: no clustering runs here."""
    x = fit.scaled(features)
    segment_id, distance = _nearest(x, fit.centroids)
    ward, _ = _nearest(x, fit.ward_centroids)
    names = dict(enumerate(fit.names))
    segments = features.select("user_id").with_columns(
        segment_id=pl.Series(segment_id, dtype=pl.Int64),
        segment_name=pl.Series([names[i] for i in segment_id.tolist()], dtype=pl.String),
        ward_segment_id=pl.Series(ward, dtype=pl.Int64),
        distance_to_centroid=pl.Series(distance, dtype=pl.Float64),
        run_id=pl.lit(run_id),
    )
    profiles = _profiles(features, segment_id, fit, run_id)
    return SegmentationResult(segments, profiles, dict(fit.metrics), dict(fit.k_scores))


def segment_users(
    features: pl.DataFrame, *, threads: int = 1, run_id: str = "", **kwargs
) -> SegmentationResult:
    """Fit on ``features`` and label the same users: :func:`fit_segments` then
    :func:`assign_segments`."""
    fit = fit_segments(features, threads=threads, **kwargs)
    return assign_segments(features, fit, run_id)


def _profiles(
    features: pl.DataFrame, segment_id: np.ndarray, fit: SegmentFit, run_id: str
) -> pl.DataFrame:
    k = len(fit.centroids)
    centroid_json = [
        json.dumps({f: round(float(v), 6) for f, v in zip(SEGMENT_FEATURES, c, strict=True)})
        for c in fit.log_centroids()
    ]
    m = fit.metrics
    profiles = _segment_means(features, segment_id, k).with_columns(
        segment_name=pl.Series(fit.names, dtype=pl.String),
        centroid_json=pl.Series(centroid_json, dtype=pl.String),
        k=pl.lit(int(m["k"]), dtype=pl.Int64),
        silhouette=pl.lit(m["silhouette"], dtype=pl.Float64),
        davies_bouldin=pl.lit(m["davies_bouldin"], dtype=pl.Float64),
        ward_silhouette=pl.lit(m["ward_silhouette"], dtype=pl.Float64),
        ward_agreement_ari=pl.lit(m["ward_agreement_ari"], dtype=pl.Float64),
        run_id=pl.lit(run_id),
    )
    return profiles.select(
        "segment_id",
        "segment_name",
        "users",
        "share",
        "buyer_share",
        *PROFILE_FEATURES,
        "centroid_json",
        "k",
        "silhouette",
        "davies_bouldin",
        "ward_silhouette",
        "ward_agreement_ari",
        "run_id",
    )


# The stored fit (table segment_model): one row; the arrays in fit_json.
SEGMENT_MODEL_SCHEMA: dict[str, pl.DataType] = {
    "fit_cutoff": pl.Datetime("us"),
    "lookback_days": pl.Int64,
    "input_digest": pl.String,
    "k_min": pl.Int64,
    "k_max": pl.Int64,
    "seed": pl.Int64,
    "k": pl.Int64,
    "users": pl.Int64,
    "fit_json": pl.String,
}


def fit_table(fit: SegmentFit) -> pl.DataFrame:
    """The fit as the one-row segment_model table (floats written exactly: JSON keeps every
    digit of a double, so a fit read back labels users exactly as the fit did)."""
    body = {
        "features": list(SEGMENT_FEATURES),
        "mean": fit.mean.tolist(),
        "scale": fit.scale.tolist(),
        "centroids": fit.centroids.tolist(),
        "ward_centroids": fit.ward_centroids.tolist(),
        "names": fit.names,
        "metrics": fit.metrics,
        "k_scores": {str(k): v for k, v in sorted(fit.k_scores.items())},
    }
    return pl.DataFrame(
        {
            "fit_cutoff": [fit.cutoff],
            "lookback_days": [fit.lookback_days],
            "input_digest": [fit.input_digest],
            "k_min": [fit.settings.get("k_min")],
            "k_max": [fit.settings.get("k_max")],
            "seed": [fit.settings.get("seed")],
            "k": [int(fit.metrics["k"])],
            "users": [int(fit.metrics["users"])],
            "fit_json": [json.dumps(body, sort_keys=True)],
        },
        schema=SEGMENT_MODEL_SCHEMA,
    )


def fit_from_table(frame: pl.DataFrame) -> SegmentFit | None:
    """The fit stored in a segment_model table; None when there is none usable (empty, or
    fitted on other features than SEGMENT_FEATURES)."""
    if frame.height != 1 or "fit_json" not in frame.columns:
        return None
    row = frame.row(0, named=True)
    body = json.loads(row["fit_json"])
    if body.get("features") != list(SEGMENT_FEATURES):
        return None
    return SegmentFit(
        mean=np.asarray(body["mean"], dtype=np.float64),
        scale=np.asarray(body["scale"], dtype=np.float64),
        centroids=np.asarray(body["centroids"], dtype=np.float64),
        ward_centroids=np.asarray(body["ward_centroids"], dtype=np.float64),
        names=list(body["names"]),
        metrics=dict(body["metrics"]),
        k_scores={int(k): float(v) for k, v in body["k_scores"].items()},
        cutoff=row["fit_cutoff"],
        lookback_days=row["lookback_days"],
        input_digest=row["input_digest"],
        settings={"k_min": row["k_min"], "k_max": row["k_max"], "seed": row["seed"]},
    )


def persona_agreement(segments: pl.DataFrame, personas: pl.DataFrame) -> pl.DataFrame:
    """One row scoring the segments against the generator's latent personas (ground truth):
    the adjusted Rand index over the users both know, how many that is, and a note when the
    data has no personas (ingested logs), in which case the index is null, never a score."""
    known = segments.select("user_id", "segment_id").join(
        personas.select("user_id", "persona").drop_nulls(), on="user_id", how="inner"
    )
    ari, note = None, None
    if known.height == 0:
        note = "no ground-truth personas (ingested data): agreement not scored"
    elif known["segment_id"].n_unique() < 2 and known["persona"].n_unique() < 2:
        note = "one segment and one persona: agreement is undefined"
    else:
        ari = float(adjusted_rand_score(known["persona"].to_list(), known["segment_id"].to_numpy()))
    return pl.DataFrame(
        {
            "persona_ari": [ari],
            "users_scored": [known.height],
            "segments": [segments["segment_id"].n_unique()],
            "personas": [known["persona"].n_unique()],
            "note": [note],
        },
        schema=SEGMENT_SCORES_SCHEMA,
    )


def user_map(
    features: pl.DataFrame,
    segments: pl.DataFrame,
    *,
    sample: int = MAP_SAMPLE,
    seed: int = 0,
) -> pl.DataFrame:
    """A 2-D PCA of the users as the clustering saw them, on a seeded sample of ``sample`` users.

    The projection is fitted on every user with a segment, from the same log1p + standardised
    SEGMENT_FEATURES the K-means ran on, so the map shows the clusters it claims to show. The
    users are sorted by id before sampling, so the same inputs and seed give the same map.
    """
    users = (
        segments.select("user_id", "segment_id", "segment_name")
        .join(features, on="user_id", how="inner")
        .sort("user_id")
    )
    if users.height < 2:
        return pl.DataFrame(schema=USER_MAP_SCHEMA)
    x = StandardScaler().fit_transform(log_features(users))
    projected = PCA(n_components=2, random_state=seed).fit_transform(x)
    picked = _sample(users.height, sample, np.random.default_rng(seed))
    return (
        users.select("user_id", "segment_id", "segment_name")[picked]
        .with_columns(
            x=pl.Series(projected[picked, 0], dtype=pl.Float64),
            y=pl.Series(projected[picked, 1], dtype=pl.Float64),
        )
        .cast(USER_MAP_SCHEMA)
    )
