"""User segments, their profiles and the 2-D user map (group "segments").

An input parameter named after its table (= asset key) needs no ``ins`` entry.
"""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import segmentation
from ubap_assets.lib.metadata import curve_table, markdown_preview
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists

GROUP = "segments"
OWNERS = ["team:analytics"]
KINDS = {"scikit-learn", "polars"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


class SegmentsConfig(dg.Config):
    k_min: int = Field(default=3, description="Smallest number of segments tried.")
    k_max: int = Field(default=10, description="Largest number of segments tried.")
    seed: int = Field(default=0, description="Seed of K-means and of the scoring samples.")
    threads: int = Field(
        default=1, description="BLAS/OpenMP threads; more spin-wait on a busy machine."
    )
    keep_ids: bool = Field(
        default=True,
        description="Match new centroids to the previous run's so segment ids stay stable.",
    )


@dg.multi_asset(
    outs={
        t.USER_SEGMENTS: dg.AssetOut(
            description="One row per user: K-means segment (stable id and name), Ward segment "
            "and distance to the centroid.",
            **STAGE,
        ),
        t.SEGMENT_PROFILES: dg.AssetOut(
            description="One row per segment: size, buyer share (users with a purchase), mean "
            "features, centroid, a human-readable name and the clustering quality (k, "
            "silhouette, Davies-Bouldin, Ward agreement).",
            **STAGE,
        ),
    },
)
def user_segmentation(
    context: dg.AssetExecutionContext,
    config: SegmentsConfig,
    warehouse: DuckDBResource,
    user_features: pl.DataFrame,
):
    """K-means on log-scaled behaviour with k chosen by silhouette; Ward for comparison."""
    previous = None
    if config.keep_ids:
        with warehouse.get_connection() as con:
            if table_exists(con, t.SEGMENT_PROFILES):
                previous = con.execute(f"SELECT * FROM main.{t.SEGMENT_PROFILES}").pl()
    try:
        result = segmentation.segment_users(
            user_features,
            k_min=config.k_min,
            k_max=config.k_max,
            seed=config.seed,
            threads=config.threads,
            previous_profiles=previous,
            run_id=context.run.run_id,
        )
    except segmentation.SegmentationError as err:
        raise dg.Failure(description=f"user_segments: {err}") from err
    m = result.metrics
    notes = []
    if previous is not None:
        notes.append(f"segment ids matched to the previous run's {previous.height} centroids")
    quality = {
        "k": int(m["k"]),
        "silhouette": round(float(m["silhouette"]), 4),
        "davies_bouldin": round(float(m["davies_bouldin"]), 4),
        "ward_silhouette": round(float(m["ward_silhouette"]), 4),
        "ward_agreement_ari": round(float(m["ward_agreement_ari"]), 4),
    }
    context.log.info(f"segments: {quality}")
    names = result.profiles.select("segment_id", "segment_name", "users", "buyer_share")
    yield dg.Output(
        result.segments,
        t.USER_SEGMENTS,
        metadata={"rows": result.segments.height, **quality, "segments": markdown_preview(names)},
    )
    yield dg.Output(
        result.profiles,
        t.SEGMENT_PROFILES,
        metadata={
            "rows": result.profiles.height,
            **quality,
            "silhouette_by_k": curve_table(result.k_scores, "k", "silhouette"),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
            "profiles": markdown_preview(result.profiles.drop("centroid_json", "run_id")),
        },
    )


@dg.asset(**STAGE)
def segment_scores(user_segments: pl.DataFrame, user_personas: pl.DataFrame) -> dg.Output:
    """One row: the segments scored against the generator's latent personas (adjusted Rand
    index, users scored), or a note saying why not. The only reader of the personas here, so
    the ground truth never reaches a user-level table."""
    scores = segmentation.persona_agreement(user_segments, user_personas)
    row = scores.row(0, named=True)
    ari = row["persona_ari"]
    return dg.Output(
        scores,
        metadata={
            "persona_ari": round(ari, 4) if ari is not None else "not scored",
            "users_scored": row["users_scored"],
            "note": row["note"] or "none",
        },
    )


class UserMapConfig(dg.Config):
    sample: int = Field(
        default=segmentation.MAP_SAMPLE, description="Most users drawn into the map (>= 2)."
    )
    seed: int = Field(default=0, description="Seed of the PCA and of the user sample.")


@dg.asset(
    **STAGE,
)
def user_map(
    config: UserMapConfig, user_features: pl.DataFrame, user_segments: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """One row per sampled user: segment and position on a 2-D PCA of the clustering features.

    The PCA runs on the same log-scaled, standardised features the K-means clustered, so the
    map the dashboard draws shows the segments as they were found; at most ``sample`` users
    (seeded) keep it light enough to plot.
    """
    frame = segmentation.user_map(
        user_features, user_segments, sample=config.sample, seed=config.seed
    )
    per_segment = frame.group_by("segment_name").len("users").sort("users", descending=True)
    return dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "users_clustered": user_segments.height,
            "segments": markdown_preview(per_segment),
        },
    )
