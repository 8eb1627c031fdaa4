"""Blocking checks of user_features: no future event is read, no null or NaN is published."""

from datetime import timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features
from ubap_assets.lib.checks import skip, skippable_check
from ubap_assets.warehouse import tables as t


@skippable_check(
    "user_features_ignore_future_events",
    asset=t.USER_FEATURES,
    description="Features at a mid-history cutoff are identical whether or not the "
    "events after it exist (every later event acts as a planted future event). "
    "Skipped with fewer than 2 days of events.",
    blocking=True,
)
def user_features_ignore_future_events(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
):
    with warehouse.get_connection() as con:
        first, end = features.event_span(con)
        days = (end - first).days
        if days < 2:
            skip(context, f"{days} day(s) of events, 2 needed")
            return
        cutoff = first + timedelta(days=days // 2)
        lookback = max(days // 2, 1)
        differing = features.future_events_guard(con, cutoff, lookback)
        future = con.execute(
            "SELECT count(*) FROM events WHERE event_ts >= ?", [cutoff]
        ).fetchone()[0]
    yield dg.AssetCheckResult(
        check_name="user_features_ignore_future_events",
        passed=differing == 0,
        metadata={
            "cutoff": cutoff.isoformat(),
            "future_events_present": int(future),
            "users_whose_features_changed": differing,
        },
    )


@dg.asset_check(asset=t.USER_FEATURES, blocking=True)
def user_features_complete(user_features: pl.DataFrame) -> dg.AssetCheckResult:
    """One row per user, and no null or NaN in any feature."""
    numeric = [c for c, d in user_features.schema.items() if d.is_numeric()]
    nulls = int(user_features.null_count().sum_horizontal()[0]) if user_features.height else 0
    nans = (
        int(
            user_features.select(
                pl.col(c).cast(pl.Float64).is_nan().sum() for c in numeric
            ).sum_horizontal()[0]
        )
        if user_features.height
        else 0
    )
    duplicates = user_features.height - user_features["user_id"].n_unique()
    return dg.AssetCheckResult(
        passed=nulls == 0 and nans == 0 and duplicates == 0 and user_features.height > 0,
        metadata={
            "rows": user_features.height,
            "nulls": nulls,
            "nans": nans,
            "duplicate_users": duplicates,
        },
    )
