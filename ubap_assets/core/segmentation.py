"""User segments: K-means with k chosen by silhouette, Ward for comparison, stable ids.

Dagster-free. Features are log1p-transformed and standardised. Silhouette is scored on a
seeded sample, and Ward (O(n^2) memory) is fitted on a sample and extended to every user by
the nearest Ward centroid, so the whole thing stays linear in the number of users.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ubap_assets.core.features import PROFILE_FEATURES, SEGMENT_FEATURES

MIN_USERS_PER_CLUSTER = 10
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


def _stable_ids(
    centroids_log: np.ndarray, scaler: StandardScaler, previous: pl.DataFrame | None
) -> np.ndarray:
    """New cluster index -> segment id: Hungarian match to the previous run's centroids."""
    k = len(centroids_log)
    if previous is None or previous.is_empty() or "centroid_json" not in previous.columns:
        return np.arange(k)
    old_ids = previous["segment_id"].to_numpy()
    old = []
    for text in previous["centroid_json"].to_list():
        values = json.loads(text)
        old.append([float(values.get(f, 0.0)) for f in SEGMENT_FEATURES])
    old_scaled = scaler.transform(np.asarray(old))
    new_scaled = scaler.transform(centroids_log)
    cost = np.linalg.norm(new_scaled[:, None, :] - old_scaled[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    ids = np.full(k, -1, dtype=np.int64)
    ids[rows] = old_ids[cols]
    next_id = int(old_ids.max()) + 1 if len(old_ids) else 0
    for i in np.flatnonzero(ids < 0):
        ids[i] = next_id
        next_id += 1
    return ids


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


def segment_users(features: pl.DataFrame, *, threads: int = 1, **kwargs) -> SegmentationResult:
    """Cluster users; return per-user labels, per-segment profiles and quality metrics.

    ``threads`` caps BLAS/OpenMP threads: on a shared 2-core machine more threads spin-wait
    and run several times slower. Other keyword arguments: see ``_segment_users``.
    """
    with threadpool_limits(limits=threads):
        return _segment_users(features, **kwargs)


def _segment_users(
    features: pl.DataFrame,
    *,
    k_min: int = 3,
    k_max: int = 10,
    seed: int = 0,
    previous_profiles: pl.DataFrame | None = None,
    run_id: str = "",
    silhouette_sample: int = 3000,
    ward_sample: int = 3000,
    kmeans_sample: int = 30000,
) -> SegmentationResult:
    if k_min < 2 or k_max < k_min:
        raise SegmentationError(f"k range must satisfy 2 <= k_min <= k_max (got {k_min}..{k_max})")
    n = features.height
    needed = k_min * MIN_USERS_PER_CLUSTER
    if n < needed:
        raise SegmentationError(
            f"too few users for k: {n} users but k_min={k_min} needs at least {needed} "
            f"({MIN_USERS_PER_CLUSTER} per cluster); load more users or lower k_min"
        )
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
    labels = km.labels_
    centroids_log = scaler.inverse_transform(km.cluster_centers_)
    ids = _stable_ids(centroids_log, scaler, previous_profiles)
    segment_id = ids[labels]
    distance = np.linalg.norm(x - km.cluster_centers_[labels], axis=1)

    # Ward on a sample, extended to everybody by the nearest Ward centroid.
    ward_idx = _sample(n, ward_sample, rng)
    ward_fit = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[ward_idx])
    ward_centres = np.vstack([x[ward_idx][ward_fit == c].mean(axis=0) for c in range(k)])
    ward = np.argmin(
        np.linalg.norm(x[:, None, :] - ward_centres[None, :, :], axis=2), axis=1
    ).astype(np.int64)

    metrics: dict[str, float | int | None] = {
        "k": k,
        "silhouette": k_scores[k],
        "davies_bouldin": float(davies_bouldin_score(x[sil_idx], labels[sil_idx])),
        "ward_silhouette": float(silhouette_score(x[sil_idx], ward[sil_idx], random_state=seed))
        if len(np.unique(ward[sil_idx])) > 1
        else 0.0,
        "ward_agreement_ari": float(adjusted_rand_score(labels, ward)),
        "users": n,
    }

    segments = features.select("user_id").with_columns(
        segment_id=pl.Series(segment_id, dtype=pl.Int64),
        ward_segment_id=pl.Series(ward, dtype=pl.Int64),
        distance_to_centroid=pl.Series(distance, dtype=pl.Float64),
    )
    profiles = _profiles(features, segments, centroids_log, ids, metrics, run_id)
    names = dict(
        zip(profiles["segment_id"].to_list(), profiles["segment_name"].to_list(), strict=True)
    )
    segments = segments.with_columns(
        segment_name=pl.col("segment_id").replace_strict(names, return_dtype=pl.String),
        run_id=pl.lit(run_id),
    ).select(
        "user_id",
        "segment_id",
        "segment_name",
        "ward_segment_id",
        "distance_to_centroid",
        "run_id",
    )
    return SegmentationResult(segments, profiles, metrics, k_scores)


def _profiles(
    features: pl.DataFrame,
    segments: pl.DataFrame,
    centroids_log: np.ndarray,
    ids: np.ndarray,
    metrics: dict,
    run_id: str,
) -> pl.DataFrame:
    means = [pl.col(c).cast(pl.Float64).mean().alias(c) for c in PROFILE_FEATURES]
    joined = features.with_columns(segment_id=segments["segment_id"])
    profiles = (
        joined.group_by("segment_id")
        .agg(
            pl.len().cast(pl.Int64).alias("users"),
            (pl.col("purchases") > 0).mean().alias("buyer_share"),
            *means,
        )
        .with_columns(share=pl.col("users") / features.height)
        .sort("segment_id")
    )
    overall = features.select(
        (pl.col("purchases") > 0).mean().alias("buyer_share"),
        *means,
        pl.col("lookback_days").max().cast(pl.Float64).alias("lookback_days")
        if "lookback_days" in features.columns
        else pl.lit(28.0).alias("lookback_days"),
    ).row(0, named=True)
    centroid_by_id = {
        int(i): json.dumps(
            {f: round(float(v), 6) for f, v in zip(SEGMENT_FEATURES, c, strict=True)}
        )
        for i, c in zip(ids, centroids_log, strict=True)
    }
    profiles = profiles.with_columns(
        segment_name=pl.Series(_name_segments(profiles, overall), dtype=pl.String),
        centroid_json=pl.col("segment_id").replace_strict(centroid_by_id, return_dtype=pl.String),
        k=pl.lit(metrics["k"], dtype=pl.Int64),
        silhouette=pl.lit(metrics["silhouette"], dtype=pl.Float64),
        davies_bouldin=pl.lit(metrics["davies_bouldin"], dtype=pl.Float64),
        ward_silhouette=pl.lit(metrics["ward_silhouette"], dtype=pl.Float64),
        ward_agreement_ari=pl.lit(metrics["ward_agreement_ari"], dtype=pl.Float64),
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
