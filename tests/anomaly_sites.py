"""Sites for the anomaly tests: a series-level site (Poisson sessions, binomial conversions) and
a generated one (the synthetic generator with a chosen plan, through the real trend functions)."""

from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl

from ubap_assets.core import anomalies, trends
from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.schema import INJECTED_ANOMALIES_SCHEMA
from ubap_assets.core.synthetic import WEEKDAY_FACTOR, WorldSpec, day_events, population

START = date(2026, 1, 5)  # a Monday: day i has the weekday factor WEEKDAY_FACTOR[i % 7]


def site_days(
    days: int,
    sessions_per_day: float,
    conversion: float,
    seed: int = 1,
    scopes: dict[str, float] | None = None,
    conversion_factor=None,
) -> pl.DataFrame:
    """A daily_trends-shaped frame: Poisson sessions with a weekly cycle, binomial conversions.
    ``scopes`` splits the sessions over device values (their shares);
    ``conversion_factor(day_index, device)`` multiplies the conversion rate."""
    rng = np.random.default_rng(seed)
    scopes = scopes or {"all": 1.0}
    rows = []
    for i in range(days):
        day = START + timedelta(days=i)
        totals: dict[str, float] = {}
        for device, share in scopes.items():
            sessions = int(rng.poisson(sessions_per_day * share * WEEKDAY_FACTOR[i % 7]))
            rate = conversion * (conversion_factor(i, device) if conversion_factor else 1.0)
            converted = int(rng.binomial(sessions, min(rate, 1.0)))
            row = {
                "sessions": sessions,
                "active_users": int(sessions * 0.9),
                "page_views": int(rng.poisson(sessions * 4)),
                "events": int(rng.poisson(sessions * 9)),
                "converted_sessions": converted,
                "bounced_sessions": int(rng.binomial(sessions, 0.3)),
                "revenue": float(rng.gamma(2.0, 40.0, converted).sum()),
                "duration_total": float(rng.exponential(200.0, sessions).sum()),
            }
            for k, v in row.items():
                totals[k] = totals.get(k, 0) + v
            if device != "all":
                rows.append({"dimension": "device", "dimension_value": device, "day": day, **row})
        rows.append({"dimension": "all", "dimension_value": "all", "day": day, **totals})
    frame = pl.DataFrame(rows)
    per_session = pl.when(pl.col("sessions") > 0)
    return frame.with_columns(
        per_session.then(pl.col("converted_sessions") / pl.col("sessions"))
        .otherwise(0.0)
        .alias("conversion_rate"),
        per_session.then(pl.col("bounced_sessions") / pl.col("sessions"))
        .otherwise(0.0)
        .alias("bounce_rate"),
        per_session.then(pl.col("duration_total") / pl.col("sessions"))
        .otherwise(0.0)
        .alias("mean_session_duration_s"),
        pl.lit(True).alias("is_complete"),
    ).drop("duration_total")


def planted(start: date, days: int, kind: str, metric: str, magnitude: float, **scope) -> dict:
    """One row of a hand-made plan (injected_anomalies' columns)."""
    return {
        "anomaly_date": start,
        "end_date": start + timedelta(days=days - 1),
        "days": days,
        "kind": kind,
        "metric": metric,
        "direction": "drop" if magnitude < 0 else "spike",
        "dimension": scope.get("dimension", "all"),
        "dimension_value": scope.get("dimension_value", "all"),
        "magnitude": magnitude,
        "description": f"{kind} {magnitude:+.0%}",
    }


def generated_site(
    users: int, days: int, seed: int, plan: list[dict], start: date = START
) -> dict[str, pl.DataFrame]:
    """The generator's events for a site under a hand-made plan, through the real trend
    functions: daily_trends, funnel_daily (and the plan as injected_anomalies)."""
    spec = WorldSpec(users=users, days=days, seed=seed, start_date=start, anomalies=False)
    truth = pl.DataFrame(plan, schema=INJECTED_ANOMALIES_SCHEMA)
    people, pages = population(spec), page_catalogue()
    events = pl.concat(  # noqa: F841 (DuckDB reads it by name)
        [day_events(spec, day, people, pages, truth) for day in spec.dates()]
    )
    con = duckdb.connect()
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    con.register("pages_frame", pages)
    con.execute("CREATE TABLE pages AS SELECT * FROM pages_frame")
    trends.build_sessions(con)
    frames = {
        "daily": trends.daily_trends(con),
        "funnel": trends.funnel_daily(con),
        "injected": truth,
    }
    con.close()
    return frames


def detect_all(frames: dict[str, pl.DataFrame], settings=None):
    """(series, history, incidents, contributors) of a site's frames."""
    settings = settings or anomalies.DetectorSettings()
    series = anomalies.monitored_series(
        frames["daily"], frames.get("segments"), frames.get("funnel"), frames.get("funnel_segments")
    )
    history = anomalies.detect(series, settings)
    history, incidents, contributors = anomalies.build_incidents(history, series, settings)
    return series, history, incidents, contributors
