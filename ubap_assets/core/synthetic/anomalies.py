"""The anomalies the generator plants, when and where: the ground truth the detectors face.

Realistic incidents: multi-day (3 to 21 days; conversion drops last at least 5), partial
(conversion -20 to -40%, traffic +30 to +60%, bot bursts adding 30 to 60% page views), some
confined to one device or traffic source.

The plan is a function of the world alone (seed, start, days, anomalies on or off), never of how
far it has been generated, so the plan through a later day extends the plan through an earlier
one. A clean world (``WorldSpec(anomalies=False)``) plants none.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl

from ubap_assets.core.schema import INJECTED_ANOMALIES_SCHEMA
from ubap_assets.core.synthetic.world_spec import WorldSpec

# kind -> (the daily metric it moves, which way, (min, max) relative change, (min, max) days,
# the scopes it may be confined to, what happened).
ANOMALY_KINDS: dict[str, tuple[str, str, tuple[float, float], tuple[int, int], tuple, str]] = {
    "conversion_drop": (
        "conversion_rate",
        "drop",
        (-0.40, -0.20),
        (5, 21),
        (("all", "all"), ("device", "mobile"), ("device", "desktop"), ("traffic_source", "paid")),
        "a checkout bug: fewer sessions complete their purchase",
    ),
    "traffic_spike": (
        "sessions",
        "spike",
        (0.30, 0.60),
        (3, 14),
        (("all", "all"), ("traffic_source", "social"), ("traffic_source", "email")),
        "a campaign brings extra, mostly bouncy sessions",
    ),
    "bot_burst": (
        "page_views",
        "spike",
        (0.30, 0.60),
        (3, 7),
        (("traffic_source", "referral"),),
        "a crawler hammers product pages",
    ),
}
KIND_ORDER: tuple[str, ...] = tuple(ANOMALY_KINDS)
MIN_GAP_DAYS = 7  # quiet days between two planted anomalies of the first history


def _row(spec: WorldSpec, kind: str, offset: int, days: int, rng: np.random.Generator) -> dict:
    metric, direction, (lo, hi), _, scopes, text = ANOMALY_KINDS[kind]
    dimension, value = scopes[int(rng.integers(0, len(scopes)))]
    magnitude = round(float(rng.uniform(lo, hi)), 3)
    where = "" if dimension == "all" else f" ({dimension}={value})"
    start = spec.start_date + timedelta(days=offset)
    return {
        "anomaly_date": start,
        "end_date": start + timedelta(days=days - 1),
        "days": days,
        "kind": kind,
        "metric": metric,
        "direction": direction,
        "dimension": dimension,
        "dimension_value": value,
        "magnitude": magnitude,
        "description": f"{text}{where}: {metric} {magnitude:+.0%} for {days} days",
    }


def anomaly_plan(spec: WorldSpec, through: date | None = None) -> pl.DataFrame:
    """Planted anomalies starting on or before ``through`` (default: the last day of ``spec``).

    In the first ``spec.days`` days: after a 3-4 week clean baseline, anomalies one after the
    other with at least a week of quiet between them, each ending before the last day. After
    them (the world grows a day each night): one anomaly per slot of ``width`` days, the kinds in
    turn, inside its slot, drawn from (seed, slot). Rows depend only on the world, never on how
    far it has been generated.
    """
    if not spec.anomalies:
        return pl.DataFrame(schema=INJECTED_ANOMALIES_SCHEMA)
    through = spec.end_date if through is None else through
    last = (through - spec.start_date).days
    rng = spec.rng(2)
    baseline, width = (28, 10) if spec.days >= 70 else (21, 6)
    rows: list[dict] = []
    cursor, i = baseline, 0
    while True:
        kind = KIND_ORDER[i % len(KIND_ORDER)]
        lo, hi = ANOMALY_KINDS[kind][3]
        start = cursor + int(rng.integers(0, 4))
        days = min(int(rng.integers(lo, hi + 1)), spec.days - 1 - start)
        if days < 3:
            break
        rows.append(_row(spec, kind, start, days, rng))
        cursor, i = start + days + MIN_GAP_DAYS, i + 1
    grown = max(spec.days, baseline)
    for j in range((last - grown) // width + 1 if last >= grown else 0):
        slot_rng = spec.rng(2, 1, j)
        kind = KIND_ORDER[(i + j) % len(KIND_ORDER)]
        offset = int(slot_rng.integers(0, width - 2))
        days = int(slot_rng.integers(3, width - offset + 1))
        rows.append(_row(spec, kind, grown + j * width + offset, days, slot_rng))
    plan = pl.DataFrame(rows, schema=INJECTED_ANOMALIES_SCHEMA)
    return plan.filter(pl.col("anomaly_date") <= through)


def active_on(plan: pl.DataFrame, day: date) -> list[dict]:
    """The planted anomalies under way on ``day``."""
    return plan.filter((pl.col("anomaly_date") <= day) & (pl.col("end_date") >= day)).to_dicts()
