"""Checks of the segmentation: recovery of the generator's personas (warn below 0.6)."""

import dagster as dg
import polars as pl

from ubap_assets.warehouse import tables as t

MIN_PERSONA_ARI = 0.6


@dg.asset_check(asset=t.SEGMENT_PROFILES, blocking=True)  # WARN severity: orders, never blocks
def segments_recover_personas(segment_profiles: pl.DataFrame) -> dg.AssetCheckResult:
    """Adjusted Rand index of the segments vs the generator's latent personas is >= 0.6
    (warning only; skipped for ingested data, which has no ground truth)."""
    ari = segment_profiles["persona_ari"].drop_nulls()
    if segment_profiles.height == 0 or ari.is_empty():
        return dg.AssetCheckResult(
            passed=True, metadata={"note": "skipped: no ground-truth personas"}
        )
    value = float(ari[0])
    return dg.AssetCheckResult(
        passed=value >= MIN_PERSONA_ARI,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"persona_ari": round(value, 4), "threshold": MIN_PERSONA_ARI},
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
