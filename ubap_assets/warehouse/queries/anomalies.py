"""Anomalies: flagged points, the scored history, incidents and their root causes, the
sensitivity simulation, the detectors' scores, and the points that could not be scored."""

from collections.abc import Sequence
from datetime import date

import duckdb
import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, Where, select_where

# What a person reads about one flagged point, in this order (the rest are detector flags).
ANOMALY_POINT_COLUMNS: tuple[str, ...] = (
    "day",
    "dimension",
    "dimension_value",
    "metric",
    "value",
    "expected",
    "lower",
    "upper",
    "direction",
    "severity",
)
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")

# incidents, as served: values rounded for reading (metric units keep 6 decimals, so a
# conversion rate of 0.121 or revenue of 1,234.56 survive; ratios 4; scores 2).
_INCIDENT_SELECT = """
    incident_id, start_day, end_day, days, ongoing, headline_metric, headline_label, direction,
    headline_dimension, headline_dimension_value,
    round(expected, 6) AS expected, round(observed, 6) AS observed,
    round(relative_change, 4) AS relative_change, round(peak_score, 2) AS peak_score, severity,
    metrics, n_points, n_scopes, top_contributor, round(top_share, 4) AS top_share, description
"""
_CONTRIBUTOR_SELECT = """
    incident_id, metric, dimension, dimension_value,
    round(expected, 6) AS expected, round(observed, 6) AS observed,
    round(change, 6) AS change, round(share, 4) AS share, rank
"""
# Newest first: the latest end, then the latest start, then the strongest.
_INCIDENT_ORDER = "end_day DESC, start_day DESC, abs(peak_score) DESC, incident_id"


def has_column(reader: SnapshotAccess, table: str, column: str) -> bool:
    """Whether ``table`` in the snapshot has ``column`` (older snapshots lack the new ones)."""
    # Binding the column is the cheapest test (information_schema takes ~20 ms).
    try:
        reader.scalar(f'SELECT "{column}" FROM "{table}" LIMIT 0')
    except duckdb.BinderException:
        return False
    return True


class AnomalyQueries:
    def anomalies_recent(self: SnapshotAccess) -> pl.DataFrame:
        """The anomalies table: flagged points of the latest period, largest |score| first."""
        self.require(t.ANOMALIES)
        return self.query(f"SELECT * FROM {t.ANOMALIES} ORDER BY abs(score) DESC, day DESC, metric")

    def anomaly_history(
        self: SnapshotAccess,
        start: date | None = None,
        end: date | None = None,
        metric: str | None = None,
        dimension: str | None = None,
        flagged_only: bool = True,
    ) -> pl.DataFrame:
        """anomaly_history rows in [start, end] (flagged only by default), newest day first."""
        where = Where().between("day", start, end).equals(metric=metric, dimension=dimension)
        if flagged_only:
            where.also("is_anomaly")
        return select_where(
            self,
            t.ANOMALY_HISTORY,
            where,
            "day DESC, abs(score) DESC, dimension, dimension_value, metric",
        )

    def anomaly_scopes(self: SnapshotAccess) -> pl.DataFrame:
        """The (dimension, dimension_value, metric) series in anomaly_history, with how many
        points each has flagged; the 'all' scope first."""
        self.require(t.ANOMALY_HISTORY)
        return self.query(
            "SELECT dimension, dimension_value, metric, count(*) FILTER (is_anomaly) AS flagged "
            f"FROM {t.ANOMALY_HISTORY} GROUP BY dimension, dimension_value, metric "
            "ORDER BY dimension <> 'all', dimension, dimension_value, metric",
        )

    def anomaly_series(
        self: SnapshotAccess,
        dimension: str,
        dimension_value: str,
        metric: str,
        start: date | None = None,
        end: date | None = None,
    ) -> pl.DataFrame:
        """Every day of one series in [start, end], oldest first, with its band and flags
        (``note`` says why a day has no score; null on older snapshots)."""
        self.require(t.ANOMALY_HISTORY)
        note = "note" if has_column(self, t.ANOMALY_HISTORY, "note") else "NULL::VARCHAR AS note"
        where = (
            Where()
            .equals(dimension=dimension, dimension_value=dimension_value, metric=metric)
            .between("day", start, end)
        )
        return self.query(
            "SELECT day, value, expected, lower, upper, is_anomaly, direction, score, severity, "
            f"seasonal_flag, level_flag, has_baseline, {note} FROM {t.ANOMALY_HISTORY} "
            f"WHERE {where.sql} ORDER BY day",
            where.params,
        )

    def anomaly_scores(self: SnapshotAccess) -> pl.DataFrame:
        self.require(t.ANOMALY_SCORES)
        return self.query(f"SELECT * FROM {t.ANOMALY_SCORES} ORDER BY detector, kind")

    # --- incidents ---

    def incidents(
        self: SnapshotAccess,
        start: date | None = None,
        end: date | None = None,
        severity: Sequence[str] | None = None,
        ongoing: bool | None = None,
        metric: str | None = None,
    ) -> pl.DataFrame:
        """Incidents overlapping [start, end], newest first; ``severity`` keeps those levels,
        ``ongoing`` only the (not) ongoing ones, ``metric`` those that involve the metric."""
        self.require(t.INCIDENTS)
        where = Where().equals(ongoing=ongoing)
        if start is not None:
            where.also("end_day >= ?", start)
        if end is not None:
            where.also("start_day <= ?", end)
        if severity:
            where.also(f"severity IN ({', '.join('?' * len(severity))})", *severity)
        if metric is not None:
            where.also("list_contains(metrics, ?)", metric)
        return self.query(
            f"SELECT {_INCIDENT_SELECT} FROM {t.INCIDENTS} WHERE {where.sql} "
            f"ORDER BY {_INCIDENT_ORDER}",
            where.params,
        )

    def incident(self: SnapshotAccess, incident_id: str) -> pl.DataFrame:
        """One incident by id (one row, or none for an unknown id)."""
        self.require(t.INCIDENTS)
        return self.query(
            f"SELECT {_INCIDENT_SELECT} FROM {t.INCIDENTS} WHERE incident_id = ?", [incident_id]
        )

    def incident_contributors(self: SnapshotAccess, incident_id: str) -> pl.DataFrame:
        """What moved in one incident: per metric x dimension, its values ranked by share
        (the headline metric first)."""
        self.require(t.INCIDENTS, t.INCIDENT_CONTRIBUTORS)
        return self.query(
            f"SELECT {_CONTRIBUTOR_SELECT} FROM {t.INCIDENT_CONTRIBUTORS} c "
            "WHERE incident_id = ? ORDER BY "
            f"metric <> (SELECT headline_metric FROM {t.INCIDENTS} WHERE incident_id = ?), "
            "metric, dimension, rank",
            [incident_id, incident_id],
        )

    def incident_points(self: SnapshotAccess, incident_id: str) -> pl.DataFrame:
        """The flagged anomaly_history points grouped into one incident, oldest day first,
        largest |score| first within a day (empty on snapshots without the incident_id column)."""
        self.require(t.ANOMALY_HISTORY)
        if not has_column(self, t.ANOMALY_HISTORY, "incident_id"):
            return self.query(f"SELECT * FROM {t.ANOMALY_HISTORY} WHERE FALSE")
        return self.query(
            f"SELECT * FROM {t.ANOMALY_HISTORY} WHERE incident_id = ? "
            "ORDER BY day, abs(score) DESC, dimension, dimension_value, metric",
            [incident_id],
        )

    def anomaly_sensitivity(self: SnapshotAccess) -> pl.DataFrame:
        """anomaly_sensitivity: incidents each threshold would have raised on this history,
        lowest threshold first."""
        self.require(t.ANOMALY_SENSITIVITY)
        return self.query(
            "SELECT round(threshold, 4) AS threshold, incidents, "
            "round(incidents_per_30_days, 2) AS incidents_per_30_days, flagged_points, is_current "
            f"FROM {t.ANOMALY_SENSITIVITY} ORDER BY threshold"
        )

    # --- never silent: what could not be scored, and why ---

    def anomaly_unscored(
        self: SnapshotAccess,
        start: date | None = None,
        end: date | None = None,
        metric: str | None = None,
        dimension: str | None = None,
    ) -> pl.DataFrame:
        """Per scope x metric with unscored days in [start, end]: how many of its days, the
        first and last of them, whether the latest day is one, and the latest day's reason
        (``note``). Scopes with the most unscored days first; empty on older snapshots."""
        self.require(t.ANOMALY_HISTORY)
        if not has_column(self, t.ANOMALY_HISTORY, "note"):
            return pl.DataFrame(schema=UNSCORED_SCHEMA)
        where = Where().between("day", start, end).equals(metric=metric, dimension=dimension)
        return self.query(
            f"""SELECT dimension, dimension_value, metric,
                       CAST(count(*) AS INTEGER) AS days,
                       CAST(count(*) FILTER (note IS NOT NULL) AS INTEGER) AS unscored_days,
                       min(day) FILTER (note IS NOT NULL) AS first_unscored_day,
                       max(day) FILTER (note IS NOT NULL) AS last_unscored_day,
                       max(day) FILTER (note IS NOT NULL) = max(day) AS latest_day_unscored,
                       arg_max(note, day) FILTER (note IS NOT NULL) AS reason
                FROM {t.ANOMALY_HISTORY} WHERE {where.sql}
                GROUP BY dimension, dimension_value, metric
                HAVING count(*) FILTER (note IS NOT NULL) > 0
                ORDER BY unscored_days DESC, dimension <> 'all', dimension, dimension_value,
                         metric""",
            where.params,
        )


UNSCORED_SCHEMA: dict[str, pl.DataType] = {
    "dimension": pl.String,
    "dimension_value": pl.String,
    "metric": pl.String,
    "days": pl.Int32,
    "unscored_days": pl.Int32,
    "first_unscored_day": pl.Date,
    "last_unscored_day": pl.Date,
    "latest_day_unscored": pl.Boolean,
    "reason": pl.String,
}
