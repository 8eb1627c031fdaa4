"""Anomalies: the latest flagged points, the scored history and the detectors' scores."""

from datetime import date

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
        self: SnapshotAccess, dimension: str, dimension_value: str, metric: str
    ) -> pl.DataFrame:
        """Every scored day of one series, oldest first, with its band and flags."""
        self.require(t.ANOMALY_HISTORY)
        return self.query(
            "SELECT day, value, expected, lower, upper, is_anomaly, direction, score, severity, "
            f"seasonal_flag, level_flag, has_baseline FROM {t.ANOMALY_HISTORY} "
            "WHERE dimension = ? AND dimension_value = ? AND metric = ? ORDER BY day",
            [dimension, dimension_value, metric],
        )

    def anomaly_scores(self: SnapshotAccess) -> pl.DataFrame:
        self.require(t.ANOMALY_SCORES)
        return self.query(f"SELECT * FROM {t.ANOMALY_SCORES} ORDER BY detector, kind")
