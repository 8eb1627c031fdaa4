"""Scored user lists and the models' metrics, curves and cards (Predictions page)."""

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading, snap_has

# Each list's reasons come from the model that ranked it (the at-risk list: the bounce model).
LIST_REASONS = {
    "high_value": ("reason_1", "reason_2", "reason_3"),
    "at_risk": ("at_risk_reason_1", "at_risk_reason_2", "at_risk_reason_3"),
}
DROPPED = (
    *LIST_REASONS["high_value"],
    *LIST_REASONS["at_risk"],
    "scored_at",
    "segment_id",
    "conversion_reason_method",
    "at_risk_reason_method",
    "conversion_note",
    "bounce_note",
)


@cached
def prediction_list(snap: Snapshot, kind: str, limit: int = 100) -> pl.DataFrame:
    """The high-value (``kind='high_value'``) or at-risk list, with that task's reasons as one
    text and the segment name after the user."""
    with reading(snap) as reader:
        scored = reader.scored_list(kind, limit)
    columns = [c for c in LIST_REASONS[kind] if c in scored.columns]
    reasons = pl.concat_str(columns, separator="; ", ignore_nulls=True) if columns else None
    shown = scored.with_columns(reasons=reasons if reasons is not None else pl.lit(None))
    shown = shown.select(pl.exclude(*DROPPED, "reasons"), "reasons")
    if not snap_has(snap, t.USER_SEGMENTS):
        return shown.drop("segment_name", strict=False)
    return shown.select(
        "user_id", pl.col("segment_name").alias("segment"), pl.exclude("user_id", "segment_name")
    )


@cached
def prediction_notes(snap: Snapshot) -> dict[str, str]:
    """{'conversion' | 'bounce': why that task serves no scores}; {} when both are scored."""
    with reading(snap) as reader:
        return reader.prediction_notes()


@cached
def reason_methods(snap: Snapshot) -> dict[str, str]:
    """{'conversion' | 'bounce': how that task's reasons were computed}."""
    with reading(snap) as reader:
        return reader.reason_methods()


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
