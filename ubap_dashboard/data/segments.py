"""Segment profiles, per-segment trends and the map of users (Segments page)."""

import polars as pl

from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading
from ubap_dashboard.data.trends import known_metric


@cached
def segment_profiles(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.segment_profiles().drop("centroid_json", strict=False)


@cached
def segment_scores(snap: Snapshot) -> dict:
    """persona_ari (null without ground truth) and the note saying why."""
    with reading(snap) as reader:
        return reader.segment_scores()


@cached
def segment_trend(snap: Snapshot, metric: str) -> pl.DataFrame:
    """``day``, ``segment`` (name), ``value`` of one metric per segment (without 'all')."""
    column = known_metric(metric)
    with reading(snap) as reader:
        trends = reader.segment_trends()
    return (
        trends.filter(pl.col("segment_id") != "all")
        .select(
            "day",
            pl.col("segment_name").alias("segment"),
            pl.col(column).alias("value"),
            "is_complete",
        )
        .sort("day", "segment")
    )


@cached
def user_map(snap: Snapshot, sample: int | None = None) -> pl.DataFrame:
    """The pipeline's map of users (a PCA of the clustering features): user_id, x, y and
    ``segment`` (the name); ``sample`` keeps that many of them."""
    with reading(snap) as reader:
        points = reader.user_map(sample)
    return points.select(
        "user_id", "x", "y", pl.col("segment_name").fill_null("unassigned").alias("segment")
    )
