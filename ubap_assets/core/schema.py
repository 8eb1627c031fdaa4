"""Column schemas of the behaviour data every source must produce (Dagster-free).

The synthetic generator and the file ingestion both emit exactly these columns and types, so
nothing downstream knows or cares where the events came from.
"""

import polars as pl

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "click",
    "scroll",
    "search",
    "add_to_cart",
    "checkout_start",
    "purchase",
)

PAGE_TYPES: tuple[str, ...] = (
    "home",
    "category",
    "product",
    "blog",
    "pricing",
    "help",
    "search",
    "cart",
    "checkout",
    "deals",
    "about",
    "stores",
    "other",
)

# One row per event. event_ts is naive UTC; revenue is set on purchases only.
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String,
    "user_id": pl.String,
    "session_id": pl.String,
    "event_ts": pl.Datetime("us"),
    "event_type": pl.String,
    "page_id": pl.String,
    "device": pl.String,
    "traffic_source": pl.String,
    "revenue": pl.Float64,
}

# One row per user.
USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "signup_date": pl.Date,
    "country": pl.String,
    "device": pl.String,
    "traffic_source": pl.String,
}

# One row per page of the catalogue.
PAGES_SCHEMA: dict[str, pl.DataType] = {
    "page_id": pl.String,
    "url": pl.String,
    "title": pl.String,
    "description": pl.String,
    "category": pl.String,
    "page_type": pl.String,
    "price": pl.Float64,
}

# Ground truth (synthetic source only; empty for ingested data): one row per user.
USER_PERSONAS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String,
    "persona": pl.String,
    "favourite_category": pl.String,
    "activity": pl.Float64,
    "purchase_propensity_14d": pl.Float64,  # P(at least one purchase in any 14 days)
}

# Ground truth (synthetic source only): one row per planted anomaly (an incident of 3-21 days).
INJECTED_ANOMALIES_SCHEMA: dict[str, pl.DataType] = {
    "anomaly_date": pl.Date,  # the first day
    "end_date": pl.Date,  # the last day (inclusive)
    "days": pl.Int32,
    "kind": pl.String,  # conversion_drop | traffic_spike | bot_burst
    "metric": pl.String,  # the daily_trends column it moves most
    "direction": pl.String,  # spike | drop
    "dimension": pl.String,  # where: all | device | traffic_source
    "dimension_value": pl.String,  # all | mobile | paid | ...
    "magnitude": pl.Float64,  # relative change of the metric in its scope (-0.3 = 30% lower)
    "description": pl.String,
}

# One row per rejected input row (file ingestion).
EVENT_REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String,
    "row_number": pl.Int64,
    "reason": pl.String,
    "raw": pl.String,  # the offending row as JSON text
    "ingested_at": pl.Datetime("us"),
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
