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
    """The high-value (``kind='high_value'``) or at-risk list, with that task's three reasons
    as ``reason_1``..``reason_3`` (each in its own column, readable in full) and the segment
    name after the user."""
    with reading(snap) as reader:
        scored = reader.scored_list(kind, limit)
    reasons = [
        (pl.col(column) if column in scored.columns else pl.lit(None, pl.String)).alias(f"why_{i}")
        for i, column in enumerate(LIST_REASONS[kind], start=1)
    ]
    shown = scored.with_columns(reasons).select(
        pl.exclude(*DROPPED, "why_1", "why_2", "why_3"), "why_1", "why_2", "why_3"
    )
    # who, the list's score and why first; ranks, the other score and the models after
    score = "conversion_probability" if kind == "high_value" else "at_risk_probability"
    first = ["user_id", "segment_name", score, "why_1", "why_2", "why_3"]
    shown = shown.select(*[c for c in first if c in shown.columns], pl.exclude(*first)).rename(
        {"segment_name": "segment"}, strict=False
    )
    if not snap_has(snap, t.USER_SEGMENTS):
        return shown.drop("segment", strict=False)
    return shown


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


@cached
def segment_outlook(snap: Snapshot) -> pl.DataFrame:
    """Per segment: users, mean P(purchase), mean P(next session bounces), at-risk users and
    share, expected purchasers (the API's /api/predictions/segments)."""
    with reading(snap) as reader:
        return reader.segment_predictions()
