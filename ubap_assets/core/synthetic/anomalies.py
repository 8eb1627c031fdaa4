"""The anomalies the generator plants, and on which days: the ground truth the detectors face.

The plan is a function of the world alone (seed, start, days), never of how far it has been
generated, so the plan through a later day extends the plan through an earlier one.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl

from ubap_assets.core.schema import INJECTED_ANOMALIES_SCHEMA
from ubap_assets.core.synthetic.world_spec import WorldSpec

# kind, the daily metric it moves, which way, and what happened.
ANOMALY_KINDS = (
    ("checkout_outage", "conversion_rate", "drop", "checkout errors: almost no purchases"),
    ("campaign_spike", "sessions", "spike", "a campaign brings a burst of new sessions"),
    ("bot_burst", "page_views", "spike", "a crawler hammers product pages"),
)


def anomaly_plan(spec: WorldSpec, through: date | None = None) -> pl.DataFrame:
    """Planted anomalies on or before ``through`` (default: the last day of ``spec``).

    In the first ``spec.days`` days: one of each kind per ~30 days after a 3-4 week clean
    baseline, never on the last of those days. After them (the world grows a day each night):
    one anomaly per slot of ``width`` days, the kinds in turn, its day drawn from (seed, slot).
    A day's anomalies depend only on the world (seed, start, days), never on how far it has been
    generated, so the plan through a later day extends the plan through an earlier one.
    """
    through = spec.end_date if through is None else through
    rng = spec.rng(2)
    baseline, width = (28, 10) if spec.days >= 70 else (21, 6)
    usable = spec.days - baseline - 1  # never in the baseline, never the last day
    slots = usable // width
    offsets: list[int] = []
    if slots >= 1:
        n = min(slots, max(len(ANOMALY_KINDS), (spec.days // 30) * len(ANOMALY_KINDS)))
        chosen = np.sort(rng.choice(slots, size=n, replace=False))
        offsets = [baseline + int(slot) * width + int(rng.integers(0, width)) for slot in chosen]
    # Beyond the first history: slot j covers [grown + j * width, grown + (j + 1) * width).
    grown, last = max(spec.days, baseline), (through - spec.start_date).days
    for j in range((last - grown) // width + 1 if last >= grown else 0):
        offsets.append(grown + j * width + int(spec.rng(2, 1, j).integers(0, width)))
    rows = []
    for i, offset in enumerate(offsets):
        if offset > last:
            break
        kind, metric, direction, text = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
        rows.append(
            {
                "anomaly_date": spec.start_date + timedelta(days=offset),
                "kind": kind,
                "metric": metric,
                "direction": direction,
                "description": text,
            }
        )
    return pl.DataFrame(rows, schema=INJECTED_ANOMALIES_SCHEMA)
