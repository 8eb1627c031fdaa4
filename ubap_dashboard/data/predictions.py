"""Scored user lists and the models' metrics, curves and cards (Predictions page)."""

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading, snap_has


@cached
def prediction_list(snap: Snapshot, kind: str, limit: int = 100) -> pl.DataFrame:
    """The high-value (``kind='high_value'``) or at-risk list with reasons and segment names."""
    with reading(snap) as reader:
        scored = reader.scored_list(kind, limit)
    # The scores in table order, the three reasons as one text where the first was, and the
    # segment name after the user.
    reasons = pl.concat_str("reason_1", "reason_2", "reason_3", separator="; ", ignore_nulls=True)
    shown = (
        scored.with_columns(reason_1=reasons)
        .rename({"reason_1": "reasons"})
        .drop("reason_2", "reason_3", "scored_at", "segment_id", strict=False)
    )
    if not snap_has(snap, t.USER_SEGMENTS):
        return shown.drop("segment_name")
    return shown.select(
        "user_id", pl.col("segment_name").alias("segment"), pl.exclude("user_id", "segment_name")
    )


@cached
def model_metrics(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.model_metrics()


@cached
def model_curves(snap: Snapshot, task: str, curve: str) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.model_curves(task, curve)


@cached
def model_cards(snap: Snapshot, task: str) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.model_cards(task)
