"""Incidents, their root causes, flagged points, the scored series behind them, the
sensitivity simulation and what could not be scored (Anomalies, Overview and Trends pages)."""

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from ubap_assets.core.metrics import ANOMALY_METRIC_LABELS
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.anomalies import ANOMALY_POINT_COLUMNS
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading

# Columns of the incident list as the page shows them, in this order.
INCIDENT_LIST_COLUMNS: tuple[str, ...] = (
    "start_day",
    "end_day",
    "days",
    "ongoing",
    "severity",
    "headline_label",
    "direction",
    "relative_change",
    "top_contributor",
    "top_share",
    "description",
    "incident_id",
)


def metric_label(metric: str) -> str:
    """The readable name of a monitored metric (trend metrics and funnel steps)."""
    return ANOMALY_METRIC_LABELS.get(metric, metric.replace("_", " "))


@cached
def anomaly_scopes(snap: Snapshot) -> pl.DataFrame:
    """The (dimension, dimension_value, metric) series present in anomaly_history."""
    with reading(snap) as reader:
        return reader.anomaly_scopes()


@cached
def anomaly_series(
    snap: Snapshot,
    dimension: str,
    value: str,
    metric: str,
    start: date | None = None,
    end: date | None = None,
) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.anomaly_series(dimension, value, metric, start, end)


@cached
def latest_anomalies(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        flagged = reader.anomalies_recent()
    return flagged.select(*ANOMALY_POINT_COLUMNS, "score")


@cached
def incidents(snap: Snapshot) -> pl.DataFrame:
    """Every incident, newest first (the table is small: one row per incident)."""
    with reading(snap) as reader:
        return reader.incidents()


def recent_incidents(snap: Snapshot, since: date) -> pl.DataFrame:
    """Incidents still going on ``since`` or later, most severe first."""
    severity = pl.col("severity").replace_strict({"high": 0, "medium": 1}, default=2)
    return (
        incidents(snap)
        .filter(pl.col("end_day") >= since)
        .sort(severity, pl.col("peak_score").abs(), descending=[False, True])
    )


@dataclass(frozen=True)
class IncidentDrill:
    contributors: pl.DataFrame
    points: pl.DataFrame | None  # None when the snapshot lacks anomaly_history


@cached
def incident_drill(snap: Snapshot, incident_id: str) -> IncidentDrill:
    """One incident's contributors (ranked, headline metric first) and flagged points."""
    with reading(snap) as reader:
        has_points = reader.has_table(t.ANOMALY_HISTORY)
        return IncidentDrill(
            contributors=reader.incident_contributors(incident_id),
            points=reader.incident_points(incident_id) if has_points else None,
        )


@cached
def sensitivity(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.anomaly_sensitivity()


@cached
def unscored(snap: Snapshot) -> pl.DataFrame:
    """Per scope x metric with days that have no score: how many, and the latest reason."""
    with reading(snap) as reader:
        return reader.anomaly_unscored()


def incident_windows(
    snap: Snapshot, metric: str | None = None, start: date | None = None, end: date | None = None
) -> pl.DataFrame:
    """The incidents overlapping [start, end], shaped for a chart annotation: ``start`` and
    ``end`` (the day after the last, so a one-day incident has a width), ``label`` (the
    headline), ``description``, ``severity`` and ``involves`` (whether ``metric`` is one of
    its metrics)."""
    frame = incidents(snap)
    if start is not None:
        frame = frame.filter(pl.col("end_day") >= start)
    if end is not None:
        frame = frame.filter(pl.col("start_day") <= end)
    involves = pl.col("metrics").list.contains(metric) if metric else pl.lit(True)
    return frame.select(
        pl.col("incident_id"),
        pl.col("start_day").alias("start"),
        (pl.col("end_day") + pl.duration(days=1)).alias("end"),
        pl.format(
            "{} {} {}{}%",
            pl.col("headline_label"),
            pl.col("direction"),
            pl.when(pl.col("relative_change") >= 0).then(pl.lit("+")).otherwise(pl.lit("")),
            (pl.col("relative_change") * 100).round(0).cast(pl.Int64),
        ).alias("label"),
        "description",
        "severity",
        involves.alias("involves"),
    )


def incident_choice(row: dict) -> str:
    """How an incident reads in a picker: '3 Feb → 16 Feb · Conversion rate drop −38% (high)'."""
    ongoing = " (ongoing)" if row["ongoing"] else ""
    return (
        f"{row['start_day']:%d %b} → {row['end_day']:%d %b}{ongoing} · {row['headline_label']} "
        f"{row['direction']} {row['relative_change']:+.0%} ({row['severity']})"
    )


def incident_note(windows: pl.DataFrame, metric_label: str) -> str:
    """The caption under an annotated chart: which incidents are shaded, in words."""
    if windows.is_empty():
        return ""
    shown = windows.sort("start").head(4)
    items = "; ".join(
        f"{row['label']} ({row['start']:%d %b} → {row['end'] - timedelta(days=1):%d %b})"
        for row in shown.iter_rows(named=True)
    )
    more = f" and {windows.height - shown.height} more" if windows.height > shown.height else ""
    involving = windows.filter(pl.col("involves")).height
    return (
        f"Shaded: {windows.height} incident(s) in this range: {items}{more}. "
        f"Coloured by severity when {metric_label.lower()} is one of the incident's metrics "
        f"({involving} here), grey otherwise; the Anomalies page has the details."
    )
