"""The monitored series: one row per complete day x scope x metric, with what its noise model
needs (numerator, denominator, sample size), from daily_trends, segment_trends and the funnels
(funnel_daily, funnel_dimensions by device and traffic source, funnel_segments)."""

import polars as pl

from ubap_assets.core.anomalies.settings import MONITORED
from ubap_assets.core.metrics import FUNNEL_STEP_METRICS

SERIES_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "dimension": pl.String,
    "dimension_value": pl.String,
    "metric": pl.String,
    "value": pl.Float64,  # what the tables show (a rate for rates)
    "numerator": pl.Float64,  # rates: successes; others: the value
    "denominator": pl.Float64,  # rates: trials; revenue / durations: sessions that day
    "units": pl.Float64,  # revenue: converted sessions; durations: sessions (sample size)
}

# metric -> (numerator, denominator, units) columns of the trend tables.
_TREND_INPUTS: dict[str, tuple[str, str, str]] = {
    "active_users": ("active_users", "sessions", "sessions"),
    "sessions": ("sessions", "sessions", "sessions"),
    "page_views": ("page_views", "sessions", "sessions"),
    "events": ("events", "sessions", "sessions"),
    "conversion_rate": ("converted_sessions", "sessions", "sessions"),
    "bounce_rate": ("bounced_sessions", "sessions", "sessions"),
    "revenue": ("revenue", "sessions", "converted_sessions"),
    "mean_session_duration_s": ("mean_session_duration_s", "sessions", "sessions"),
}
_RATES = frozenset({"conversion_rate", "bounce_rate"})
# funnel step -> the step before it and the monitored metric of its step conversion.
_STEP_METRICS: dict[str, str] = {m.removeprefix("funnel_"): m for m in FUNNEL_STEP_METRICS}


def _trend_long(wide: pl.DataFrame) -> pl.DataFrame:
    """Wide trend rows (day, dimension, dimension_value, metric columns) to long series rows."""
    parts = []
    for metric, (num, den, units) in _TREND_INPUTS.items():
        numerator = pl.col(num).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
        denominator = pl.col(den).cast(pl.Float64).fill_null(0.0)
        value = (
            pl.when(denominator > 0).then(numerator / denominator).otherwise(0.0)
            if metric in _RATES
            else numerator
        )
        parts.append(
            wide.select(
                "day",
                "dimension",
                "dimension_value",
                pl.lit(metric).alias("metric"),
                value.alias("value"),
                numerator.alias("numerator"),
                denominator.alias("denominator"),
                pl.col(units).cast(pl.Float64).fill_null(0.0).alias("units"),
            )
        )
    return pl.concat(parts)


def _funnel_long(
    funnel: pl.DataFrame, keys: list[str], dimension: pl.Expr, value: pl.Expr
) -> pl.DataFrame:
    """Step conversion of each step after the first: sessions reaching it / the step before."""
    ordered = funnel.sort(*keys, "step_index").with_columns(
        pl.col("sessions").shift(1).over(keys).alias("_prev")
    )
    rows = ordered.filter(pl.col("step").is_in(list(_STEP_METRICS)))
    prev = pl.col("_prev").cast(pl.Float64).fill_null(0.0)
    reached = pl.col("sessions").cast(pl.Float64)
    return rows.select(
        "day",
        dimension.alias("dimension"),
        value.alias("dimension_value"),
        pl.col("step").replace_strict(_STEP_METRICS).alias("metric"),
        pl.when(prev > 0).then(reached / prev).otherwise(0.0).alias("value"),
        reached.alias("numerator"),
        prev.alias("denominator"),
        prev.alias("units"),
    )


def monitored_series(
    daily: pl.DataFrame | None,
    segments: pl.DataFrame | None = None,
    funnel: pl.DataFrame | None = None,
    funnel_segments: pl.DataFrame | None = None,
    funnel_dimensions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every complete day x scope (all, device, traffic source, segment) x monitored metric.

    The funnel steps' scopes: ``all`` from ``funnel`` (funnel_daily), device and traffic source
    from ``funnel_dimensions`` (its ``all`` rows repeat funnel_daily and are left out), segments
    from ``funnel_segments``. Segment scopes cover the days of ``segments`` / ``funnel_segments``
    only (their trailing window); their ``all`` rows repeat daily_trends and are left out.
    """
    parts = []
    if daily is not None and daily.height:
        parts.append(_trend_long(daily.filter(pl.col("is_complete"))))
    if segments is not None and segments.height:
        seg = segments.filter(pl.col("is_complete") & (pl.col("segment_id") != "all"))
        parts.append(
            _trend_long(
                seg.with_columns(
                    pl.lit("segment").alias("dimension"),
                    pl.col("segment_name").alias("dimension_value"),
                )
            )
        )
    if funnel is not None and funnel.height:
        parts.append(
            _funnel_long(
                funnel.filter(pl.col("is_complete")), ["day"], pl.lit("all"), pl.lit("all")
            )
        )
    if funnel_segments is not None and funnel_segments.height:
        seg = funnel_segments.filter(pl.col("is_complete") & (pl.col("segment_id") != "all"))
        parts.append(
            _funnel_long(seg, ["day", "segment_id"], pl.lit("segment"), pl.col("segment_name"))
        )
    if funnel_dimensions is not None and funnel_dimensions.height:
        dims = funnel_dimensions.filter(pl.col("is_complete") & (pl.col("dimension") != "all"))
        parts.append(
            _funnel_long(
                dims,
                ["day", "dimension", "dimension_value"],
                pl.col("dimension"),
                pl.col("dimension_value"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=SERIES_SCHEMA)
    frame = pl.concat([p.cast(SERIES_SCHEMA) for p in parts], how="vertical")
    frame = frame.filter(pl.col("metric").is_in(list(MONITORED)))
    single = single_valued_dimensions(frame)
    frame = frame.filter(~pl.col("dimension").is_in(single))
    return frame.sort("dimension", "dimension_value", "metric", "day")


def single_valued_dimensions(frame: pl.DataFrame) -> list[str]:
    """Device or traffic source with one value over the whole history (a log without the field
    gives everyone "unknown"): its series repeat the overall ones, so they are not scored twice."""
    counts = (
        frame.filter(pl.col("dimension").is_in(["device", "traffic_source"]))
        .group_by("dimension")
        .agg(pl.col("dimension_value").n_unique().alias("values"))
    )
    return sorted(counts.filter(pl.col("values") == 1)["dimension"].to_list())
