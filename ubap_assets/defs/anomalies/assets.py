"""Anomaly detection over the daily metrics, its history and its score (group "anomalies").

An input parameter named after its table (= asset key) needs no ``ins`` entry.
"""

import dataclasses

import dagster as dg
import polars as pl
from pydantic import Field, create_model

from ubap_assets.core import anomaly
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.anomalies import ANOMALY_POINT_COLUMNS

GROUP = "anomalies"
OWNERS = ["team:analytics"]
KINDS = {"polars", "duckdb"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


def _notes(notes: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none")


# What each detector knob means in the launchpad; the names, types and defaults are the core's
# DetectorSettings, so the run config can never drift from what the detectors take.
_KNOB_DESCRIPTIONS: dict[str, str] = {
    "threshold": "Robust z-score (median/MAD units) a point must exceed to be flagged.",
    "baseline_weeks": "Same-weekday values of previous weeks in the seasonal baseline.",
    "min_baseline_weeks": "Fewer previous same-weekday values than this: the day is warm-up.",
    "level_window_days": "Trailing days whose median is the level detector's baseline.",
    "scale_window_days": "Trailing days of residuals that estimate the spread (MAD).",
    "min_scale_points": "Fewer trailing residuals than this: the day is warm-up.",
    "min_relative_scale": "Floor of the spread as a share of the expected value (avoids zero MAD).",
    "min_daily_sessions": "Scopes with median daily sessions below this are not scored (noise).",
}
_DetectorKnobs = create_model(
    "_DetectorKnobs",
    __base__=dg.Config,
    **{
        knob.name: (
            type(knob.default),
            Field(default=knob.default, description=_KNOB_DESCRIPTIONS[knob.name]),
        )
        for knob in dataclasses.fields(anomaly.DetectorSettings)
    },
)


class AnomalyConfig(_DetectorKnobs):
    """The detectors' knobs; ``threshold`` is the sensitivity (lower = more alerts)."""

    def settings(self) -> anomaly.DetectorSettings:
        detector_settings = anomaly.DetectorSettings(**self.model_dump())
        problems = detector_settings.problems()
        if problems:
            raise dg.Failure(
                description="Invalid anomaly configuration: " + "; ".join(problems),
                metadata={"fix": "correct the run config of anomaly_history"},
            )
        return detector_settings


class LatestConfig(dg.Config):
    latest_days: int = Field(
        default=7, description="The latest period: this many complete days up to the last one."
    )


@dg.asset(
    **STAGE,
)
def anomaly_history(
    context: dg.AssetExecutionContext,
    config: AnomalyConfig,
    daily_trends: pl.DataFrame,
    segment_trends: pl.DataFrame,
) -> dg.Output:
    """One row per complete day x scope (all, device, traffic source, segment) x metric: value,
    expected value and range, both detectors' scores, the ensemble flag, direction, severity."""
    settings = config.settings()
    series = anomaly.series_frame(daily_trends, segment_trends)
    history = anomaly.detect(series, settings)
    notes = anomaly.history_notes(series, history, settings)
    for note in notes:
        context.log.info(note)
    flagged = history.filter(pl.col("is_anomaly"))
    overall = flagged.filter(pl.col("dimension") == "all")
    return dg.Output(
        history,
        metadata={
            "rows": history.height,
            "threshold": settings.threshold,
            "warmup_days": settings.warmup_days,
            "scopes": history.select("dimension", "dimension_value").n_unique(),
            "flagged_points": flagged.height,
            "flagged_points_overall": overall.height,
            "notes": _notes(notes),
            "flagged_overall": markdown_preview(
                overall.sort("day").select(
                    "day", "metric", "value", "expected", "score", "direction", "severity"
                ),
                20,
            ),
        },
    )


@dg.asset(**STAGE, ins={"history": dg.AssetIn(t.ANOMALY_HISTORY)})
def anomalies(
    context: dg.AssetExecutionContext, config: LatestConfig, history: pl.DataFrame
) -> dg.Output:
    """One row per flagged point (day x scope x metric) in the latest period of complete days,
    worst first: value, expected value and range, direction and severity."""
    if config.latest_days < 1:
        raise dg.Failure(description=f"latest_days must be at least 1 (got {config.latest_days})")
    frame = anomaly.latest(history, config.latest_days)
    notes = []
    if history.height == 0:
        notes.append("anomaly_history is empty: no complete day to look at")
    elif not history.filter(pl.col("has_baseline")).height:
        notes.append("history shorter than the detector window: nothing scored yet")
    return dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "as_of": str(history["day"].max()) if history.height else "none",
            "latest_days": config.latest_days,
            "high_severity": frame.filter(pl.col("severity") == "high").height,
            "notes": _notes(notes),
            "preview": markdown_preview(frame.select(ANOMALY_POINT_COLUMNS)),
        },
    )


@dg.asset(
    **STAGE,
    ins={
        "history": dg.AssetIn(t.ANOMALY_HISTORY),
        "injected": dg.AssetIn(t.INJECTED_ANOMALIES),
    },
)
def anomaly_scores(
    context: dg.AssetExecutionContext, history: pl.DataFrame, injected: pl.DataFrame
) -> dg.Output:
    """One row per detector x anomaly kind (+ overall): precision, recall and F1 of the detection
    against the generator's planted anomalies (empty without ground truth)."""
    scores, notes = anomaly.score_detection(history, injected)
    for note in notes:
        context.log.info(note)
    metadata: dict[str, object] = {"rows": scores.height, "notes": _notes(notes)}
    ens = scores.filter(pl.col("detector") == "ensemble")
    for row in ens.iter_rows(named=True):
        for m in ("precision", "recall", "f1"):
            metadata[f"{row['kind']}_{m}"] = round(float(row[m]), 4)
    metadata["scores"] = markdown_preview(scores.drop("note"), 20)
    return dg.Output(scores, metadata=metadata)
