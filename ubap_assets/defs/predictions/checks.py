"""Checks of user_predictions: probabilities in [0, 1], each task's reasons from its own model,
one row per user, and a note wherever a task serves no model."""

import dagster as dg
import polars as pl

from ubap_assets.core.explain import OUTCOMES
from ubap_assets.core.predictions import AT_RISK_REASONS, CONVERSION_REASONS
from ubap_assets.warehouse import tables as t

# (probability column, reason columns, note column, the outcome its reasons must name)
TASK_COLUMNS = (
    ("conversion_probability", CONVERSION_REASONS, "conversion_note", OUTCOMES["conversion"]),
    ("at_risk_probability", AT_RISK_REASONS, "bounce_note", OUTCOMES["bounce"]),
)


@dg.asset_check(asset=t.USER_PREDICTIONS, blocking=True)
def predictions_are_valid(user_predictions: pl.DataFrame) -> dg.AssetCheckResult:
    """Per task: a served score is finite and in [0, 1] with three reasons that speak of that
    task's outcome (so at-risk users get the bounce model's reasons); an unserved task has a
    null score and a note on every row; user ids are unique."""
    p = user_predictions
    metadata: dict[str, int] = {
        "rows": p.height,
        "duplicate_users": p.height - p["user_id"].n_unique(),
    }
    problems = metadata["duplicate_users"]
    for probability, reasons, note, outcome in TASK_COLUMNS:
        served = p.filter(pl.col(note).is_null())
        unserved = p.filter(pl.col(note).is_not_null())
        task = probability.removesuffix("_probability")
        counts = {
            f"{task}_bad_probabilities": served.filter(
                pl.col(probability).is_null()
                | ~pl.col(probability).is_finite()
                | (pl.col(probability) < 0)
                | (pl.col(probability) > 1)
            ).height,
            f"{task}_missing_reasons": served.filter(
                pl.any_horizontal(pl.col(c).is_null() for c in reasons)
            ).height,
            f"{task}_reasons_of_another_outcome": served.filter(
                ~pl.col(reasons[0]).str.ends_with(f"the {outcome})")
            ).height,
            f"{task}_unserved_rows_with_a_score": unserved.filter(
                pl.col(probability).is_not_null()
            ).height,
        }
        metadata.update(counts)
        metadata[f"{task}_unserved_rows"] = unserved.height
        problems += sum(counts.values())
    return dg.AssetCheckResult(passed=p.height > 0 and problems == 0, metadata=metadata)
