"""Anomaly detection a site can trust: noise models by metric kind, incidents with their root
cause, the threshold simulated on history, and incident-level scoring against planted truth.

Dagster-free. One module per job:

- ``settings``: the knobs and the monitored metrics with their noise model;
- ``series``: the monitored series from daily_trends, segment_trends and the funnels;
- ``noise``: the noise models (counts, rates, revenue / durations), scored online;
- ``detect``: anomaly_history and the latest flagged points;
- ``incidents``: incidents, their contributors, and the sensitivity simulation;
- ``evaluation``: anomaly_scores against planted anomalies, beside a rolling 3-sigma baseline.
"""

from ubap_assets.core.anomalies.detect import (
    HISTORY_SCHEMA,
    SERIES_KEYS,
    STATE_SCHEMA,
    Detection,
    detect,
    detect_from,
    history_notes,
    latest,
)
from ubap_assets.core.anomalies.evaluation import (
    SCORES_SCHEMA,
    false_incident_rate,
    rolling_baseline,
    score_detection,
)
from ubap_assets.core.anomalies.incidents import (
    CONTRIBUTORS_SCHEMA,
    INCIDENTS_SCHEMA,
    SENSITIVITY_SCHEMA,
    SENSITIVITY_THRESHOLDS,
    build_incidents,
    sensitivity,
)
from ubap_assets.core.anomalies.series import SERIES_SCHEMA, monitored_series
from ubap_assets.core.anomalies.settings import (
    MAX_ABS_SCORE,
    METRIC_FAMILIES,
    METRIC_KINDS,
    MONITORED,
    DetectorSettings,
)

__all__ = [
    "CONTRIBUTORS_SCHEMA",
    "HISTORY_SCHEMA",
    "INCIDENTS_SCHEMA",
    "MAX_ABS_SCORE",
    "METRIC_FAMILIES",
    "METRIC_KINDS",
    "MONITORED",
    "SCORES_SCHEMA",
    "SENSITIVITY_SCHEMA",
    "SENSITIVITY_THRESHOLDS",
    "SERIES_KEYS",
    "SERIES_SCHEMA",
    "STATE_SCHEMA",
    "DetectorSettings",
    "Detection",
    "build_incidents",
    "detect",
    "detect_from",
    "false_incident_rate",
    "history_notes",
    "latest",
    "monitored_series",
    "rolling_baseline",
    "score_detection",
    "sensitivity",
]
