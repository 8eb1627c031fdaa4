"""User segments, their profiles and the 2-D user map (group "segments").

An input parameter named after its table (= asset key) needs no ``ins`` entry.
"""

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import features, segmentation
from ubap_assets.lib.metadata import curve_table, markdown_preview
from ubap_assets.settings import current_settings
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


def _fit_in_service(
    context: dg.AssetExecutionContext,
    config: SegmentsConfig,
    con: duckdb.DuckDBPyConnection,
    user_features: pl.DataFrame,
) -> tuple[segmentation.SegmentFit, str | None]:
    """The fit for this data end: the stored one while it still serves, else a new fit on the
    features at the training boundary; and why it was refitted (None if not)."""
    data_end = user_features["cutoff"].max()
    first_day, _ = features.daily_span(con)
    cutoff, lookback = segmentation.fit_window(
        first_day,
        data_end,
        current_settings().retrain_every_days,
        int(user_features["lookback_days"].max()),
    )
    digest = segmentation.input_digest(con, cutoff, lookback, t.USER_DAILY, t.USERS)
    settings = {"k_min": config.k_min, "k_max": config.k_max, "seed": config.seed}
    stored = None
    if table_exists(con, t.SEGMENT_MODEL):
        stored = segmentation.fit_from_table(con.execute(f"SELECT * FROM {t.SEGMENT_MODEL}").pl())
    if stored is not None and stored.serves(cutoff, lookback, digest, settings):
        return stored, None
    if stored is None:
        reason = "no stored fit"
    elif stored.cutoff != cutoff or stored.lookback_days != lookback:
        reason = f"boundary moved from {stored.cutoff} ({stored.lookback_days} days) to {cutoff}"
    elif stored.settings != settings:
        reason = f"settings changed from {stored.settings} to {settings}"
    else:
        reason = f"the user-days before {cutoff:%Y-%m-%d} changed"
    if cutoff == data_end and lookback == int(user_features["lookback_days"].max()):
        fit_features = user_features
    else:
        fit_features = features.compute_features(con, cutoff, lookback, t.USER_DAILY, t.USERS)
    context.log.info(f"segments: refitting on the features at {cutoff} ({reason})")
    fit = segmentation.fit_segments(fit_features, threads=config.threads, **settings)
    fit.cutoff, fit.lookback_days, fit.input_digest = cutoff, lookback, digest
    return fit, reason


@dg.multi_asset(
    outs={
        t.USER_SEGMENTS: dg.AssetOut(
            description="One row per user: nearest K-means segment of the fit in service (id "
            "and name), Ward segment and distance to the centroid.",
            is_required=False,
            **STAGE,
        ),
        t.SEGMENT_PROFILES: dg.AssetOut(
            description="One row per segment: size, buyer share (users with a purchase), mean "
            "features, centroid, a human-readable name and the clustering quality (k, "
            "silhouette, Davies-Bouldin, Ward agreement).",
            is_required=False,
            **STAGE,
        ),
        t.SEGMENT_MODEL: dg.AssetOut(
            description="One row: the segmentation fit in service (scaler, centroids, names) "
            "and what it was fitted on (training boundary, lookback, input digest, settings).",
            is_required=False,
            **STAGE,
        ),
    },
    deps=[t.USER_DAILY, t.USERS],
    can_subset=True,
)
def user_segmentation(
    context: dg.AssetExecutionContext,
    config: SegmentsConfig,
    warehouse: DuckDBResource,
    user_features: pl.DataFrame,
):
    """Segments on the training cadence: K-means on log-scaled behaviour (k by silhouette,
    Ward for comparison) fitted on the features at the training boundary and refitted only
    when the boundary or the data before it change; every night each user is labelled with
    the nearest centroid of that fit. Ids are numbered by segment size at the fit."""
    try:
        with warehouse.get_connection() as con:
            fit, refit_reason = _fit_in_service(context, config, con, user_features)
        result = segmentation.assign_segments(user_features, fit, run_id=context.run.run_id)
    except (segmentation.SegmentationError, features.FeatureWindowError) as err:
        raise dg.Failure(description=f"user_segments: {err}") from err
    m = result.metrics
    quality = {
        "k": int(m["k"]),
        "silhouette": round(float(m["silhouette"]), 4),
        "davies_bouldin": round(float(m["davies_bouldin"]), 4),
        "ward_silhouette": round(float(m["ward_silhouette"]), 4),
        "ward_agreement_ari": round(float(m["ward_agreement_ari"]), 4),
    }
    cadence = {
        "fit_boundary": fit.cutoff.isoformat(),
        "fit_lookback_days": int(fit.lookback_days),
        "fit_users": int(m["users"]),
        "refit": refit_reason is not None,
        "refit_reason": refit_reason or "none: the stored fit serves this data end",
    }
    context.log.info(f"segments: {quality} {cadence}")
    names = result.profiles.select("segment_id", "segment_name", "users", "buyer_share")
    outputs = {
        t.USER_SEGMENTS: (
            result.segments,
            {"rows": result.segments.height, "segments": markdown_preview(names)},
        ),
        t.SEGMENT_PROFILES: (
            result.profiles,
            {
                "rows": result.profiles.height,
                "silhouette_by_k": curve_table(result.k_scores, "k", "silhouette"),
                "profiles": markdown_preview(result.profiles.drop("centroid_json", "run_id")),
            },
        ),
        t.SEGMENT_MODEL: (segmentation.fit_table(fit), {}),
    }
    # A selection without segment_model leaves the stored fit as it was (the next run refits
    # if it no longer serves).
    for name in context.selected_output_names:
        frame, extra = outputs[name]
        yield dg.Output(frame, name, metadata={**extra, **quality, **cadence})


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
