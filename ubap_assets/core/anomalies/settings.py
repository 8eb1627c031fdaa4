"""The detector's knobs and the monitored metrics with their noise model (kind)."""

from dataclasses import dataclass

from ubap_assets.core.metrics import ANOMALY_METRIC_LABELS, FUNNEL_STEP_METRICS

MAX_ABS_SCORE = 50.0  # scores are signed z-values of a tail probability, clipped to this

# The noise model of each monitored metric: "count" (negative binomial around a seasonal
# baseline), "rate" (beta-binomial with that day's denominator) or "log" (robust, log scale;
# for sums over sessions, whose noise grows with the session mix: page views, events, revenue,
# durations).
COUNT, RATE, LOG = "count", "rate", "log"
METRIC_KINDS: dict[str, str] = {
    "active_users": COUNT,
    "sessions": COUNT,
    "page_views": LOG,
    "events": LOG,
    "conversion_rate": RATE,
    "bounce_rate": RATE,
    "revenue": LOG,
    "mean_session_duration_s": LOG,
    **{metric: RATE for metric in FUNNEL_STEP_METRICS},
}
MONITORED: tuple[str, ...] = tuple(METRIC_KINDS)
assert set(MONITORED) == set(ANOMALY_METRIC_LABELS), "every monitored metric needs a label"

# What a metric's family is: a planted anomaly is caught by an incident involving its family.
METRIC_FAMILIES: dict[str, str] = {
    "active_users": "traffic",
    "sessions": "traffic",
    "page_views": "traffic",
    "events": "traffic",
    "conversion_rate": "conversion",
    "revenue": "conversion",
    "bounce_rate": "engagement",
    "mean_session_duration_s": "engagement",
    **{metric: "conversion" for metric in FUNNEL_STEP_METRICS},
}


@dataclass(frozen=True)
class DetectorSettings:
    """Knobs of the detector (the asset's dg.Config passes them through)."""

    threshold: float = 4.0  # |z| that flags a point: the sensitivity
    baseline_weeks: int = 4  # same-weekday values in the seasonal baseline
    min_baseline_weeks: int = 2  # fewer same-weekday values than this: warm-up
    history_days: int = 28  # trailing days that estimate the noise (over-dispersion, spread)
    min_history_points: int = 7  # fewer trailing residuals than this: warm-up
    max_window_days: int = 14  # evidence is also pooled over the last 3, 7 and this many days
    min_relative_noise: float = 0.02  # counts vary at least this much beyond Poisson
    min_relative_change: float = 0.1  # a flagged day is off its expectation by at least this
    min_incident_points: int = 3  # days or scopes; fewer: the peak needs 1.5 x threshold
    incident_gap_days: int = 1  # flagged days this far apart still make one incident

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.threshold <= MAX_ABS_SCORE:
            out.append(f"threshold must be in (0, {MAX_ABS_SCORE:g}] (got {self.threshold})")
        for name in (
            "baseline_weeks",
            "min_baseline_weeks",
            "history_days",
            "min_history_points",
            "max_window_days",
            "min_incident_points",
        ):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.min_baseline_weeks > self.baseline_weeks:
            out.append("min_baseline_weeks must not exceed baseline_weeks")
        if self.min_history_points > self.history_days:
            out.append("min_history_points must not exceed history_days")
        if self.min_relative_change < 0:
            out.append("min_relative_change must be >= 0")
        if self.min_relative_noise < 0:
            out.append("min_relative_noise must be >= 0")
        if self.incident_gap_days < 0:
            out.append("incident_gap_days must be >= 0")
        return out

    @property
    def windows(self) -> tuple[int, ...]:
        """The trailing windows (days) whose pooled evidence can flag a day."""
        return tuple(
            sorted({1, *(w for w in (3, 7) if w < self.max_window_days), self.max_window_days})
        )

    @property
    def rate_warmup_days(self) -> int:
        """Days of history before a rate can be scored (its baseline pools the past)."""
        return 7 * self.min_baseline_weeks

    @property
    def warmup_days(self) -> int:
        """Days of history before a count, revenue or duration can be scored."""
        return 7 * self.min_baseline_weeks + self.min_history_points
