"""Flagged points and the scored series behind them (Overview and Anomalies pages)."""

import polars as pl

from ubap_assets.warehouse.queries.anomalies import ANOMALY_POINT_COLUMNS
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard.data.source import cached, reading


@cached
def anomaly_scopes(snap: Snapshot) -> pl.DataFrame:
    """The (dimension, dimension_value, metric) series present in anomaly_history."""
    with reading(snap) as reader:
        return reader.anomaly_scopes()


@cached
def anomaly_series(snap: Snapshot, dimension: str, value: str, metric: str) -> pl.DataFrame:
    with reading(snap) as reader:
        return reader.anomaly_series(dimension, value, metric)


@cached
def latest_anomalies(snap: Snapshot) -> pl.DataFrame:
    with reading(snap) as reader:
        flagged = reader.anomalies_recent()
    return flagged.select(*ANOMALY_POINT_COLUMNS, "score")
