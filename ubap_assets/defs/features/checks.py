"""Blocking checks of user_features: no future day is read, the features agree with the
sessions they summarise, no null or NaN is published."""

from datetime import datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ubap_assets.core import features
from ubap_assets.lib.checks import skip, skippable_check
from ubap_assets.warehouse import tables as t

# Users recomputed from the sessions per run (every k-th user by id): enough to catch a wrong
# definition, cheap on any history (the sessions are read for these users only).
SAMPLE_USERS = 2000

# The definitions again, written independently of core/features.py and of user_daily: a user's
# sessions that *start* in [cutoff - lookback, cutoff), each with all its events.
_FROM_SESSIONS_SQL = f"""
SELECT s.user_id,
       count(*) AS sessions,
       count(DISTINCT s.day) AS active_days,
       sum(s.events) AS events,
       sum(s.page_views) AS page_views,
       sum(s.purchases) AS purchases,
       sum(s.add_to_cart) AS add_to_cart,
       sum(s.revenue) AS revenue,
       avg(CASE WHEN s.is_bounce THEN 1.0 ELSE 0.0 END) AS bounce_rate,
       avg(s.duration_s) / 60.0 AS avg_session_minutes,
       sum(s.product_views) / nullif(sum(s.page_views), 0) AS product_share,
       max(s.session_end) AS last_end
FROM {t.SESSIONS} AS s JOIN ubap_feature_sample USING (user_id)
WHERE s.day >= ? AND s.day < ?
GROUP BY s.user_id
"""

# Days of features the future-events guard computes before its cutoff. The guard asks whether
# the feature SQL reads a day at or after the cutoff: a property of its upper date bound, not
# of the window's length. A leak changes the row of any user active after the cutoff at any
# window length, so a bounded window tests the same thing (and, with days before the window,
# also catches a read of them), at a cost that does not grow with the history: the copy and
# both computations read this many days, never half the history.
GUARD_LOOKBACK_DAYS = 28


def guard_window(first: datetime, end: datetime) -> tuple[datetime, int]:
    """The guard's cutoff (mid-history, so half the days are planted future) and lookback
    (the days before it, at most ``GUARD_LOOKBACK_DAYS``) for data in ``[first, end)``."""
    days = (end - first).days
    cutoff = first + timedelta(days=days // 2)
    return cutoff, min(max(days // 2, 1), GUARD_LOOKBACK_DAYS)


def bounded_future_guard(
    con: duckdb.DuckDBPyConnection, first: datetime, end: datetime
) -> tuple[datetime, int, int]:
    """The guard's cutoff, lookback and users whose features changed (``future_events_guard``
    over ``guard_window``), for data in ``[first, end)``."""
    cutoff, lookback = guard_window(first, end)
    try:
        return cutoff, lookback, features.future_events_guard(con, cutoff, lookback)
    except features.FeatureWindowError:
        if cutoff - timedelta(days=lookback) <= first:
            raise
        # No session in the bounded window (a gap in the data): reach back to the first day,
        # which always has one.
        lookback = (cutoff - first).days
        return cutoff, lookback, features.future_events_guard(con, cutoff, lookback)


COUNTS = ("sessions", "active_days", "events", "page_views", "purchases", "add_to_cart")
RATES = ("revenue", "bounce_rate", "avg_session_minutes", "product_share", "recency_days")


def features_against_sessions(
    con: duckdb.DuckDBPyConnection, user_features: pl.DataFrame, sample: int = SAMPLE_USERS
) -> tuple[int, dict[str, int]]:
    """Users checked, and per feature how many of them differ from a recomputation from
    ``sessions`` (counts exactly, the rest to 1e-6 relative)."""
    step = max(1, user_features.height // sample)
    chosen = user_features.sort("user_id").gather_every(step)
    cutoff = chosen["cutoff"][0]
    lookback = int(chosen["lookback_days"][0])
    con.register("ubap_feature_sample", chosen.select("user_id"))
    try:
        recomputed = con.execute(
            _FROM_SESSIONS_SQL, [(cutoff - timedelta(days=lookback)).date(), cutoff.date()]
        ).pl()
    finally:
        con.unregister("ubap_feature_sample")
    recency = ((pl.lit(cutoff) - pl.col("last_end")).dt.total_microseconds() / 86_400e6).clip(0.0)
    recomputed = recomputed.with_columns(recency_days=recency.fill_null(float(lookback)))
    joined = chosen.join(recomputed, on="user_id", how="left", suffix="_sessions")
    zero = {c: 0 for c in COUNTS} | {"revenue": 0.0, "bounce_rate": 0.0}
    zero |= {"avg_session_minutes": 0.0, "product_share": 0.0, "recency_days": float(lookback)}
    joined = joined.with_columns(pl.col(f"{c}_sessions").fill_null(v) for c, v in zero.items())
    differ = {c: pl.col(c).ne_missing(pl.col(f"{c}_sessions")).sum() for c in COUNTS}
    differ |= {
        c: (
            (pl.col(c) - pl.col(f"{c}_sessions")).abs()
            > 1e-6 * pl.max_horizontal(pl.col(c).abs(), pl.lit(1.0))
        ).sum()
        for c in RATES
    }
    counts = joined.select(**differ).row(0, named=True)
    return chosen.height, {c: int(n) for c, n in counts.items()}


@skippable_check(
    "user_features_ignore_future_events",
    asset=t.USER_FEATURES,
    description="Features at a mid-history cutoff (over at most "
    f"{GUARD_LOOKBACK_DAYS} days before it) are identical whether or not user_daily holds the "
    "days after it (every later day acts as planted future activity). Skipped with fewer than "
    "2 days of data.",
    blocking=True,
)
def user_features_ignore_future_events(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
):
    with warehouse.get_connection() as con:
        first, end = features.daily_span(con)
        days = (end - first).days
        if days < 2:
            skip(context, f"{days} day(s) of data, 2 needed")
            return
        cutoff, lookback, differing = bounded_future_guard(con, first, end)
        future = con.execute(
            f"SELECT coalesce(sum(sessions), 0) FROM {t.USER_DAILY} WHERE day >= ?",
            [cutoff.date()],
        ).fetchone()[0]
    yield dg.AssetCheckResult(
        check_name="user_features_ignore_future_events",
        passed=differing == 0,
        metadata={
            "cutoff": cutoff.isoformat(),
            "lookback_days": lookback,
            "future_sessions_present": int(future),
            "users_whose_features_changed": differing,
        },
    )


@skippable_check(
    "user_features_match_sessions",
    asset=t.USER_FEATURES,
    description="For a sample of users (every k-th, at most "
    f"{SAMPLE_USERS}), the counts, revenue, bounce rate, session minutes, product share and "
    "recency equal a recomputation from the sessions table by session start day, written "
    "independently of user_daily and of the feature SQL. Skipped without users.",
    blocking=True,
    ins={"user_features": dg.AssetIn(t.USER_FEATURES)},
)
def user_features_match_sessions(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, user_features: pl.DataFrame
):
    if user_features.is_empty():
        skip(context, "user_features has no rows")
        return
    with warehouse.get_connection() as con:
        checked, differing = features_against_sessions(con, user_features)
    yield dg.AssetCheckResult(
        check_name="user_features_match_sessions",
        passed=not any(differing.values()),
        metadata={
            "users_checked": checked,
            "features_checked": ", ".join(differing),
            "differing_users_per_feature": dg.MetadataValue.json(differing),
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
