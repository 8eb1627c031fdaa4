"""Anomaly detection over the daily metrics: scored history, incidents with their root cause,
the threshold simulated on history, the latest flagged points and the score against planted
truth (group "anomalies").

An input parameter named after its table (= asset key) needs no ``ins`` entry.
"""

import dataclasses

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field, create_model

from ubap_assets.core import anomalies as core
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.lib.run_partitions import days_of_run
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists
from ubap_assets.warehouse.queries.anomalies import ANOMALY_POINT_COLUMNS

GROUP = "anomalies"
OWNERS = ["team:analytics"]
KINDS = {"polars", "duckdb"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}
# The detector's state per series x day (core.STATE_SCHEMA): written with anomaly_history, read
# by the next run to score only the days whose inputs changed. Not served.
ANOMALY_STATE = t.ANOMALY_STATE
# The daily tables the monitored series come from, read in SQL (some are day-partitioned).
_SERIES_INPUTS = (
    t.DAILY_TRENDS,
    t.SEGMENT_TRENDS,
    t.FUNNEL_DAILY,
    t.FUNNEL_SEGMENTS,
    t.FUNNEL_DIMENSIONS,
)


def _notes(notes: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none")


# What each detector knob means in the launchpad; the names, types and defaults are the core's
# DetectorSettings, so the run config can never drift from what the detector takes.
_KNOB_DESCRIPTIONS: dict[str, str] = {
    "threshold": "|z| (of a tail probability) a point must reach to be flagged: the sensitivity.",
    "baseline_weeks": "Same-weekday values of previous weeks in the seasonal baseline.",
    "min_baseline_weeks": "Fewer previous same-weekday values than this: the day is warm-up.",
    "history_days": "Trailing days that estimate the noise (over-dispersion, spread).",
    "min_history_points": "Fewer trailing residuals than this: the day is warm-up.",
    "max_window_days": "Evidence is also pooled over the last 3 and this many days.",
    "min_relative_noise": "Counts vary at least this much (relative) beyond Poisson noise.",
    "min_relative_change": "A flagged day is off its expectation by at least this (relative).",
    "min_incident_points": "Flagged days or scopes an incident needs unless one point is strong.",
    "incident_gap_days": "Flagged days this many days apart still make one incident.",
}
_DetectorKnobs = create_model(
    "_DetectorKnobs",
    __base__=dg.Config,
    **{
        knob.name: (
            type(knob.default),
            Field(default=knob.default, description=_KNOB_DESCRIPTIONS[knob.name]),
        )
        for knob in dataclasses.fields(core.DetectorSettings)
    },
)


class AnomalyConfig(_DetectorKnobs):
    """The detector's knobs; ``threshold`` is the sensitivity (lower = more alerts)."""

    def settings(self) -> core.DetectorSettings:
        detector_settings = core.DetectorSettings(**self.model_dump())
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


@dg.multi_asset(
    outs={
        t.ANOMALY_HISTORY: dg.AssetOut(
            **STAGE,
            description=(
                "One row per complete day x scope (all, device, traffic source, segment) x "
                "monitored metric (trend metrics and funnel steps): value, expected value and "
                "range, signed score (|z| <= 50), flag, direction, severity, the incident it "
                "belongs to, and a note where it cannot be scored."
            ),
        ),
        t.INCIDENTS: dg.AssetOut(
            **STAGE,
            description=(
                "One row per incident (flagged points grouped over consecutive days, co-moving "
                "metrics and scopes), newest first: headline, change, severity, top contributor."
            ),
        ),
        t.INCIDENT_CONTRIBUTORS: dg.AssetOut(
            **STAGE,
            description=(
                "One row per incident x metric x dimension x value: its share of the change."
            ),
        ),
        t.ANOMALY_SENSITIVITY: dg.AssetOut(
            **STAGE,
            description=(
                "One row per threshold: how many incidents it would have raised on this history."
            ),
        ),
    },
    deps=[dg.AssetKey(name) for name in _SERIES_INPUTS],
    can_subset=False,
)
def anomaly_history(
    context: dg.AssetExecutionContext, config: AnomalyConfig, warehouse: DuckDBResource
):
    """Score every series with its noise model, group the flags into incidents, rank their
    contributors and simulate the thresholds on the history.

    A day-partitioned run scores only the days from its first day on (and any earlier day
    whose inputs changed, e.g. re-assigned segments), resuming from the state the previous run
    kept; the rest keeps its rows. That equals scoring the whole history (the models read only
    the past). The segment series cover the segment tables' trailing window
    (UBAP_SEGMENT_TREND_DAYS): as it moves they are scored again over it, and their days before
    it go. An unpartitioned run scores everything."""
    settings = config.settings()
    run_days = days_of_run(context.run.tags)
    with warehouse.get_connection() as con:
        series = core.monitored_series(*(_read(con, name) for name in _SERIES_INPUTS))
        previous = _read(con, ANOMALY_STATE) if run_days else None
        detection = core.detect_from(
            series, settings, previous, recompute_from=run_days[0] if run_days else None
        )
        _store_state(con, detection)
    history, incidents, contributors = core.build_incidents(detection.history, series, settings)
    sensitivity = core.sensitivity(history, settings)
    notes = core.history_notes(series, history, settings)
    for note in notes:
        context.log.info(note)
    flagged = history.filter(pl.col("is_anomaly"))
    yield dg.Output(
        history,
        output_name=t.ANOMALY_HISTORY,
        metadata={
            "rows": history.height,
            "threshold": settings.threshold,
            "scopes": history.select("dimension", "dimension_value").n_unique(),
            "series": history.select("dimension", "dimension_value", "metric").n_unique(),
            "scored_points": history.filter(pl.col("has_baseline")).height,
            "flagged_points": flagged.height,
            "incidents": incidents.height,
            "max_abs_score": round(float(history["score"].abs().max() or 0.0), 2),
            "scored_now": dg.MetadataValue.text(
                f"{detection.scored_cells:,} of {history.height:,} points scored in this run "
                f"({detection.resumed_series} series resumed from the previous state)"
            ),
            "notes": _notes(notes),
        },
    )
    yield dg.Output(
        incidents,
        output_name=t.INCIDENTS,
        metadata={
            "rows": incidents.height,
            "ongoing": incidents.filter(pl.col("ongoing")).height,
            "high_severity": incidents.filter(pl.col("severity") == "high").height,
            "preview": markdown_preview(
                incidents.select("incident_id", "days", "severity", "description"), 20
            ),
        },
    )
    yield dg.Output(
        contributors,
        output_name=t.INCIDENT_CONTRIBUTORS,
        metadata={
            "rows": contributors.height,
            "top": markdown_preview(contributors.filter(pl.col("rank") == 1), 20),
        },
    )
    yield dg.Output(
        sensitivity,
        output_name=t.ANOMALY_SENSITIVITY,
        metadata={
            "rows": sensitivity.height,
            "current_threshold": settings.threshold,
            "simulation": markdown_preview(sensitivity, 20),
            "caveat": "each threshold re-groups this run's scores into incidents",
        },
    )


def _read(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame | None:
    """A whole warehouse table (the daily aggregates are small), None when not written yet."""
    if not table_exists(con, table):
        return None
    return con.execute(f'SELECT * FROM "{table}"').pl()


def _store_state(con: duckdb.DuckDBPyConnection, detection: core.Detection) -> None:
    """Bring anomaly_state to ``detection.state``: its rescored rows replace the stored ones
    (and rows no longer in it go) in one transaction, or the whole table is replaced."""
    if not detection.resumed_from_previous:
        _replace(con, ANOMALY_STATE, detection.state)
        return
    keys = [*core.SERIES_KEYS, "day"]
    match = " AND ".join(f's."{k}" = r."{k}"' for k in keys)
    con.register("ubap_rescored", detection.rescored)
    con.register("ubap_state_keys", detection.state.select(keys))
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {ANOMALY_STATE} s USING ubap_rescored r WHERE {match}")
            con.execute(
                f"DELETE FROM {ANOMALY_STATE} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM ubap_state_keys r WHERE {match})"
            )
            con.execute(f"INSERT INTO {ANOMALY_STATE} SELECT * FROM ubap_rescored")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.unregister("ubap_rescored")
        con.unregister("ubap_state_keys")


def _replace(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Replace ``table`` by ``frame`` in one statement (atomic)."""
    con.register("ubap_frame_in", frame)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM ubap_frame_in')
    finally:
        con.unregister("ubap_frame_in")


@dg.asset(**STAGE, ins={"history": dg.AssetIn(t.ANOMALY_HISTORY)})
def anomalies(
    context: dg.AssetExecutionContext, config: LatestConfig, history: pl.DataFrame
) -> dg.Output:
    """One row per flagged point (day x scope x metric) in the latest period of complete days,
    worst first: value, expected value and range, direction, severity and incident."""
    if config.latest_days < 1:
        raise dg.Failure(description=f"latest_days must be at least 1 (got {config.latest_days})")
    frame = core.latest(history, config.latest_days)
    notes = []
    if history.height == 0:
        notes.append("anomaly_history is empty: no complete day to look at")
    elif not history.filter(pl.col("has_baseline")).height:
        reasons = history["note"].drop_nulls().unique().sort().to_list()
        notes.append("no point could be scored yet: " + "; ".join(reasons[:3]))
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
        "sensitivity": dg.AssetIn(t.ANOMALY_SENSITIVITY),
        "injected": dg.AssetIn(t.INJECTED_ANOMALIES),
    },
)
def anomaly_scores(
    context: dg.AssetExecutionContext,
    history: pl.DataFrame,
    sensitivity: pl.DataFrame,
    injected: pl.DataFrame,
) -> dg.Output:
    """One row per detector (this one, a rolling 3-sigma baseline) x planted kind (+ overall):
    incident-level recall, false incidents per 30 days and days to detect against the
    generator's planted anomalies (empty without ground truth)."""
    current = sensitivity.filter(pl.col("is_current"))["threshold"]
    threshold = float(current[0]) if current.len() else core.DetectorSettings().threshold
    scores, notes = core.score_detection(
        history, injected, core.DetectorSettings(threshold=threshold)
    )
    for note in notes:
        context.log.info(note)
    metadata: dict[str, object] = {"rows": scores.height, "notes": _notes(notes)}
    for row in scores.filter(pl.col("kind") == "overall").iter_rows(named=True):
        prefix = "overall" if row["detector"] == "ensemble" else row["detector"]
        for m in ("precision", "recall", "f1", "false_incidents_per_30_days"):
            metadata[f"{prefix}_{m}"] = round(float(row[m]), 4)
    metadata["scores"] = markdown_preview(scores.drop("note"), 20)
    return dg.Output(scores, metadata=metadata)
