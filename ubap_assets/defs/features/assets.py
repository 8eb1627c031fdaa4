"""Per-user behaviour features over the whole observation window (group "features"), from the
daily aggregates (user_daily), never from the events."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import features
from ubap_assets.lib.metadata import markdown_preview
from ubap_assets.warehouse import tables as t

GROUP = "features"
OWNERS = ["team:analytics"]
KINDS = {"duckdb", "polars"}
# What every asset of the stage shares: its group, owners and kinds.
STAGE = {"group_name": GROUP, "owners": OWNERS, "kinds": KINDS}


def feature_dictionary() -> dg.MetadataValue:
    lines = [
        "Summed from user_daily: a session and all its events count on the session's start "
        "day (UTC), even when it ends after midnight.",
        "",
        "| feature | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in features.FEATURE_DICTIONARY.items()]
    return dg.MetadataValue.md("\n".join(lines))


class FeaturesConfig(dg.Config):
    lookback_days: int = Field(
        default=0,
        description="Days of history before the cutoff to describe; 0 = all the history.",
    )


def profile_window(con, lookback_days: int = 0):
    """The cutoff (midnight after the last day a session started) and the lookback to use."""
    first, end = features.daily_span(con)
    span = (end - first).days
    return end, span if lookback_days <= 0 else min(lookback_days, span)


@dg.asset(
    name=t.USER_FEATURES,
    **STAGE,
    deps=[t.USER_DAILY, t.USERS],
)
def user_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, warehouse: DuckDBResource
) -> dg.Output:
    """One row per user: behaviour over the observation window up to the last day of data
    (recency, frequency, sessions, pages per session, shares of page types, cart, purchases,
    revenue, device, traffic source, tenure), summed from user_daily: a session and its events
    count on the session's start day."""
    try:
        with warehouse.get_connection() as con:
            cutoff, lookback = profile_window(con, config.lookback_days)
            frame = features.compute_features(con, cutoff, lookback)
    except features.FeatureWindowError as err:
        raise dg.Failure(description=f"user_features: {err}") from err
    active = frame.filter(pl.col("sessions") > 0)
    context.log.info(f"{frame.height} users, {active.height} active, cutoff {cutoff}")
    return dg.Output(
        frame,
        metadata={
            "rows": frame.height,
            "active_users": active.height,
            "cutoff": cutoff.isoformat(),
            "lookback_days": lookback,
            "buyers": frame.filter(pl.col("purchases") > 0).height,
            "feature_dictionary": feature_dictionary(),
            "preview": markdown_preview(frame),
        },
    )
