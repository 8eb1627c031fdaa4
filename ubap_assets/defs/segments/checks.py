"""Checks of the segmentation (persona recovery, consistent profiles) and of the user map."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from ubap_assets.lib.checks import skip, skippable_check
from ubap_assets.warehouse import tables as t

MIN_PERSONA_ARI = 0.6


@skippable_check(
    "segments_recover_personas",
    asset=t.SEGMENT_SCORES,
    description=f"The segments agree with the generator's latent personas (adjusted "
    f"Rand index >= {MIN_PERSONA_ARI}); a warning. Skipped without ground truth.",
    ins={"segment_scores": dg.AssetIn(t.SEGMENT_SCORES)},
)
def segments_recover_personas(
    context: dg.AssetCheckExecutionContext, segment_scores: pl.DataFrame
) -> Iterator[dg.AssetCheckResult]:
    """Persona recovery, or SKIPPED (no result) where the data has no personas to score against."""
    row = segment_scores.row(0, named=True) if segment_scores.height else {}
    if row.get("persona_ari") is None:
        reason = row.get("note") or "segment_scores is empty"
        skip(context, f"{reason}")
        return
    value = float(row["persona_ari"])
    yield dg.AssetCheckResult(
        passed=value >= MIN_PERSONA_ARI,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "persona_ari": round(value, 4),
            "threshold": MIN_PERSONA_ARI,
            "users_scored": row["users_scored"],
        },
    )


@dg.asset_check(asset=t.SEGMENT_PROFILES, blocking=True)
def segment_profiles_consistent(segment_profiles: pl.DataFrame) -> dg.AssetCheckResult:
    """Segment ids and names are unique, sizes add up to all users, no NaN."""
    numeric = [c for c, d in segment_profiles.schema.items() if d.is_float()]
    nans = (
        int(segment_profiles.select(pl.col(c).is_nan().sum() for c in numeric).sum_horizontal()[0])
        if segment_profiles.height
        else 0
    )
    unique = (
        segment_profiles["segment_id"].n_unique() == segment_profiles.height
        and segment_profiles["segment_name"].n_unique() == segment_profiles.height
    )
    share = float(segment_profiles["share"].sum()) if segment_profiles.height else 0.0
    return dg.AssetCheckResult(
        passed=bool(unique and nans == 0 and abs(share - 1.0) < 1e-6),
        metadata={"segments": segment_profiles.height, "nans": nans, "share_total": share},
    )


@dg.asset_check(
    asset=t.USER_MAP,
    blocking=True,
    additional_ins={"user_segments": dg.AssetIn(t.USER_SEGMENTS)},
)
def user_map_matches_segments(
    user_map: pl.DataFrame, user_segments: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every mapped user is a clustered user with the same segment id and name, once, at a
    finite position: the map shows the segmentation, not a stale or different one."""
    joined = user_map.join(
        user_segments.select("user_id", "segment_id", "segment_name"),
        on="user_id",
        how="left",
        suffix="_clustered",
    )
    unknown = joined.filter(pl.col("segment_id_clustered").is_null()).height
    mismatched = joined.filter(
        (pl.col("segment_id") != pl.col("segment_id_clustered"))
        | (pl.col("segment_name") != pl.col("segment_name_clustered"))
    ).height
    not_finite = user_map.filter(~(pl.col("x").is_finite() & pl.col("y").is_finite())).height
    duplicates = user_map.height - user_map["user_id"].n_unique()
    return dg.AssetCheckResult(
        passed=unknown == mismatched == not_finite == duplicates == 0
        and (user_map.height > 0 or user_segments.height == 0),
        metadata={
            "rows": user_map.height,
            "unknown_users": unknown,
            "segment_mismatches": mismatched,
            "not_finite": not_finite,
            "duplicate_users": duplicates,
        },
    )
