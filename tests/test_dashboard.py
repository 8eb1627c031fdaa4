"""The dashboard through Streamlit's AppTest: every page renders from a real serving snapshot.

The snapshot is published with the pipeline's own ``publish_snapshot`` into ``tmp_path``. Users,
pages and events come from the synthetic generator; the derived tables are small frames built
here with exactly the columns the producers document in docs/tables/*.md (so these tests do not
run the whole graph, and fail when a page reads a column the contract does not have).
"""

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from ubap_assets.core import segmentation
from ubap_assets.core.metrics import TREND_COLUMNS
from ubap_assets.core.metrics import TREND_METRICS as TREND_LABELS
from ubap_assets.core.synthetic import WorldSpec, generate_world
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.snapshots import Snapshot, publish_snapshot, snapshot_meta_frame

APP = Path(__file__).resolve().parents[1] / "ubap_dashboard" / "streamlit_app.py"
START = date(2026, 1, 5)  # a Monday
DAYS = 28
PAGE_FILES = {
    "overview": "overview.py",
    "trends": "trends.py",
    "funnels": "funnels.py",
    "segments": "segments.py",
    "predictions": "predictions.py",
    "anomalies": "anomalies.py",
    "recommendations": "recommendations.py",
    "admin": "admin.py",
    "pipeline": "pipeline.py",
}
SEGMENTS = {0: "Loyal buyers", 1: "Researchers", 2: "One-page bouncers", 3: "Casual browsers"}
STEPS = ("page_view", "product_view", "add_to_cart", "checkout_start", "purchase")
TREND_METRICS = TREND_COLUMNS  # the documented trend columns


# --- the snapshot: real users/pages/events, contract-shaped derived tables ---------------------


def _trends(con: duckdb.DuckDBPyConnection, grain: str) -> pl.DataFrame:
    """daily_trends / weekly_trends in their documented shape, aggregated from the events."""
    period = (
        "CAST(event_ts AS DATE)" if grain == "day" else "CAST(date_trunc('week', event_ts) AS DATE)"
    )
    parts = []
    for dimension in ("all", "device", "traffic_source"):
        value = "'all'" if dimension == "all" else dimension
        parts.append(
            f"""
            WITH s AS (
                SELECT session_id, any_value(user_id) AS user_id, min({period}) AS p,
                       any_value({value}) AS v, count(*) AS n,
                       count(*) FILTER (event_type = 'page_view') AS views,
                       bool_or(event_type = 'purchase') AS converted,
                       epoch(max(event_ts) - min(event_ts)) AS seconds
                FROM events GROUP BY session_id),
            first_seen AS (SELECT user_id, min({period}) AS p0 FROM events GROUP BY user_id),
            e AS (SELECT {period} AS p, {value} AS v, * FROM events)
            SELECT e.p AS period, '{dimension}' AS dimension, e.v AS dimension_value,
                   count(DISTINCT e.user_id) AS active_users,
                   count(DISTINCT e.user_id) FILTER (f.p0 = e.p) AS new_users,
                   count(*) AS events,
                   count(*) FILTER (event_type = 'page_view') AS page_views,
                   count(*) FILTER (event_type = 'purchase') AS purchases,
                   coalesce(sum(revenue), 0.0) AS revenue,
                   any_value(ss.sessions) AS sessions,
                   any_value(ss.converted_sessions) AS converted_sessions,
                   any_value(ss.bounced_sessions) AS bounced_sessions,
                   any_value(ss.mean_session_duration_s) AS mean_session_duration_s,
                   any_value(ss.views) AS session_views
            FROM e JOIN first_seen f USING (user_id)
            JOIN (SELECT p, v, count(*) AS sessions,
                         count(*) FILTER (converted) AS converted_sessions,
                         count(*) FILTER (n = 1 AND views = 1) AS bounced_sessions,
                         avg(seconds) AS mean_session_duration_s, sum(views)::DOUBLE AS views
                  FROM s GROUP BY ALL) ss ON ss.p = e.p AND ss.v = e.v
            GROUP BY ALL"""
        )
    frame = con.execute(" UNION ALL ".join(f"SELECT * FROM ({q})" for q in parts)).pl()
    key = "day" if grain == "day" else "week_start"
    frame = frame.rename({"period": key}).with_columns(
        returning_users=pl.col("active_users") - pl.col("new_users"),
        conversion_rate=pl.col("converted_sessions") / pl.col("sessions"),
        bounce_rate=pl.col("bounced_sessions") / pl.col("sessions"),
        pages_per_session=pl.col("session_views") / pl.col("sessions"),
        is_complete=pl.lit(True),
    )
    if grain == "week":
        frame = frame.with_columns(days_with_data=pl.lit(7, pl.Int32))
    return frame.drop("session_views").sort(key, "dimension", "dimension_value")


def _funnel(days: list[date], segments: dict[str, str] | None, rng) -> pl.DataFrame:
    rows = []
    for day in days:
        for segment_id, name in (segments or {"": ""}).items():
            sessions = int(rng.integers(300, 400))
            for index, step in enumerate(STEPS, start=1):
                previous = sessions
                if index > 1:
                    sessions = int(previous * rng.uniform(0.2, 0.6))
                row = {
                    "day": day,
                    "step_index": index,
                    "step": step,
                    "sessions": sessions,
                    "drop_off": 0 if index == 1 else previous - sessions,
                    "is_complete": True,
                }
                if segments:
                    row |= {"segment_id": segment_id, "segment_name": name}
                rows.append(row)
    frame = pl.DataFrame(rows).with_columns(pl.col("step_index").cast(pl.Int32))
    keys = ["day", "segment_id"] if segments else ["day"]
    return frame.with_columns(
        step_conversion=pl.col("sessions")
        / pl.col("sessions").shift(1).over(keys).fill_null(pl.col("sessions")),
        overall_conversion=pl.col("sessions") / pl.col("sessions").first().over(keys),
    ).with_columns(drop_off_rate=1 - pl.col("step_conversion"))


def _funnel_dimensions(days: list[date], rng) -> pl.DataFrame:
    """funnel_dimensions: 'all' plus each device and traffic source, from per device x source
    cells, so that each dimension's values add up to 'all' as in the pipeline."""
    cells = []
    for day in days:
        for device in ("desktop", "mobile", "tablet"):
            for source in ("organic", "paid", "direct"):
                sessions = int(rng.integers(20, 60))
                for index, step in enumerate(STEPS, start=1):
                    if index > 1:
                        sessions = int(sessions * rng.uniform(0.2, 0.7))
                    cells.append((day, device, source, index, step, sessions))
    cells = pl.DataFrame(
        cells,
        schema=["day", "device", "traffic_source", "step_index", "step", "sessions"],
        orient="row",
    )
    keys = ["day", "dimension", "dimension_value"]
    parts = [
        cells.group_by("day", "step_index", "step")
        .agg(pl.col("sessions").sum())
        .with_columns(dimension=pl.lit("all"), dimension_value=pl.lit("all"))
    ] + [
        cells.group_by("day", dimension, "step_index", "step")
        .agg(pl.col("sessions").sum())
        .rename({dimension: "dimension_value"})
        .with_columns(dimension=pl.lit(dimension))
        for dimension in ("device", "traffic_source")
    ]
    frame = pl.concat([p.select(*keys, "step_index", "step", "sessions") for p in parts])
    previous = pl.col("sessions").shift(1).over(keys, order_by="step_index")
    return (
        frame.with_columns(pl.col("step_index").cast(pl.Int32))
        .sort(*keys, "step_index")
        .with_columns(
            step_conversion=pl.col("sessions") / previous.fill_null(pl.col("sessions")),
            overall_conversion=pl.col("sessions") / pl.col("sessions").first().over(keys),
            drop_off=(previous - pl.col("sessions")).fill_null(0),
            is_complete=pl.lit(True),
        )
        .with_columns(drop_off_rate=1 - pl.col("step_conversion"))
    )


def _anomaly_history(daily: pl.DataFrame) -> pl.DataFrame:
    overall = daily.filter(pl.col("dimension") == "all").sort("day")
    frames = []
    for metric in ("sessions", "conversion_rate", "revenue"):
        values = overall[metric].cast(pl.Float64)
        expected = values.rolling_median(7, min_samples=1)
        frame = pl.DataFrame({"day": overall["day"], "value": values, "expected": expected})
        spread = (frame["expected"].abs() * 0.15).fill_null(0.0)
        score = (frame["value"] - frame["expected"]) / spread.clip(lower_bound=1e-9)
        frame = (
            frame.with_columns(
                dimension=pl.lit("all"),
                dimension_value=pl.lit("all"),
                metric=pl.lit(metric),
                lower=pl.col("expected") - spread,
                upper=pl.col("expected") + spread,
                seasonal_score=score,
                level_score=score * 0.8,
                score=score,
            )
            .with_columns(
                is_anomaly=pl.col("score").abs() > 1.0,
                has_baseline=pl.int_range(pl.len()) >= 7,
            )
            .with_columns(
                is_anomaly=pl.col("is_anomaly") & pl.col("has_baseline"),
                seasonal_flag=pl.col("is_anomaly"),
                level_flag=pl.col("is_anomaly"),
                direction=pl.when(~pl.col("is_anomaly"))
                .then(pl.lit("none"))
                .when(pl.col("score") > 0)
                .then(pl.lit("spike"))
                .otherwise(pl.lit("drop")),
                severity=pl.when(~pl.col("is_anomaly"))
                .then(pl.lit("none"))
                .when(pl.col("score").abs() > 2)
                .then(pl.lit("high"))
                .otherwise(pl.lit("low")),
            )
        )
        frames.append(frame)
    return (
        pl.concat(frames, how="diagonal")
        .fill_nan(0.0)
        .with_columns(
            note=pl.when(pl.col("has_baseline"))
            .then(pl.lit(None, pl.String))
            .otherwise(pl.lit("warm-up: fewer than 7 days of history"))
        )
    )


# The incidents of the dashboard's snapshot: (metrics, first day index, last day index, severity).
INCIDENT_PLAN = {
    "sessions": (("sessions", "active_users"), 12, 15, "high"),
    "conversion_rate": (("conversion_rate",), 20, DAYS - 2, "medium"),
}


def _incidents(history: pl.DataFrame, days: list[date]) -> dict[str, pl.DataFrame]:
    """incidents, incident_contributors and anomaly_sensitivity in the contract's shape
    (docs/tables/anomalies.md), and anomaly_history with each flagged point's incident_id."""
    incidents, contributors, tagged = [], [], []
    for headline, (metrics, first, last, severity) in INCIDENT_PLAN.items():
        start, end = days[first], days[last]
        incident_id = f"{start}-{headline}-drop"
        window = pl.col("day").is_between(start, end) & pl.col("metric").is_in(metrics)
        tagged.append(pl.when(window & pl.col("is_anomaly")).then(pl.lit(incident_id)))
        points = history.filter(window & pl.col("is_anomaly")).height
        label = TREND_LABELS[headline]
        incidents.append(
            {
                "incident_id": incident_id,
                "start_day": start,
                "end_day": end,
                "days": (end - start).days + 1,
                "ongoing": end == days[-2],
                "headline_metric": headline,
                "headline_label": label,
                "direction": "drop",
                "headline_dimension": "all",
                "headline_dimension_value": "all",
                "expected": 200.0 if headline == "sessions" else 0.195,
                "observed": 120.0 if headline == "sessions" else 0.121,
                "relative_change": -0.4 if headline == "sessions" else -0.38,
                "peak_score": -12.5 if severity == "high" else -6.0,
                "severity": severity,
                "metrics": list(metrics),
                "n_points": points,
                "n_scopes": 1,
                "top_contributor": "device=mobile",
                "top_share": 0.92,
                "description": f"{label} fell 38% from {start:%d %b} to {end:%d %b}; "
                "mobile accounts for 92% of the drop.",
            }
        )
        for metric in metrics:
            for dimension, values in (
                ("device", ("mobile", "desktop", "tablet")),
                ("traffic_source", ("organic", "paid")),
            ):
                shares = (0.92, 0.06, 0.02) if dimension == "device" else (0.7, 0.3)
                for rank, (value, share) in enumerate(zip(values, shares, strict=True), 1):
                    contributors.append(
                        {
                            "incident_id": incident_id,
                            "metric": metric,
                            "dimension": dimension,
                            "dimension_value": value,
                            "expected": 100.0,
                            "observed": 100.0 - 50 * share,
                            "change": -50 * share,
                            "share": share,
                            "rank": rank,
                        }
                    )
    thresholds = (2.0, 3.0, 4.0, 5.0, 6.0)
    sensitivity = pl.DataFrame(
        {
            "threshold": thresholds,
            "incidents": [9, 5, 2, 1, 0],
            "incidents_per_30_days": [12.9, 7.1, 2.9, 1.4, 0.0],
            "flagged_points": [40, 22, 9, 3, 0],
            "is_current": [x == 4.0 for x in thresholds],
        }
    ).with_columns(pl.col("incidents", "flagged_points").cast(pl.Int32))
    return {
        t.ANOMALY_HISTORY: history.with_columns(
            incident_id=pl.coalesce(*tagged, pl.lit(None, pl.String))
        ),
        t.INCIDENTS: pl.DataFrame(incidents)
        .with_columns(pl.col("days", "n_points", "n_scopes").cast(pl.Int32))
        .sort("end_day", descending=True),
        t.INCIDENT_CONTRIBUTORS: pl.DataFrame(contributors).with_columns(
            pl.col("rank").cast(pl.Int32)
        ),
        t.ANOMALY_SENSITIVITY: sensitivity,
    }


def contract_tables(world, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """Every serving table, shaped as docs/tables/*.md describe it."""
    con = duckdb.connect()
    events = world.events  # noqa: F841 - read by DuckDB below
    con.execute("CREATE TABLE events AS SELECT * FROM events")
    daily, weekly = _trends(con, "day"), _trends(con, "week")
    days = daily["day"].unique().sort().to_list()
    users = world.users["user_id"].to_list()
    pages = world.pages
    n = len(users)
    as_of = days[-1]
    cutoff = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    seg_ids = rng.integers(0, len(SEGMENTS), n)
    segments = pl.DataFrame(
        {
            "user_id": users,
            "segment_id": seg_ids.astype(np.int64),
            "segment_name": [SEGMENTS[int(s)] for s in seg_ids],
            "ward_segment_id": rng.integers(0, len(SEGMENTS), n).astype(np.int64),
            "distance_to_centroid": rng.uniform(0, 3, n),
            "run_id": "r1",
        }
    )
    feature_counts = (
        "active_days",
        "sessions",
        "sessions_last_7d",
        "events",
        "page_views",
        "searches",
        "add_to_cart",
        "checkout_starts",
        "purchases",
    )
    features = pl.DataFrame(
        {
            "user_id": users,
            "cutoff": [cutoff] * n,
            "lookback_days": [28] * n,
            "recency_days": rng.uniform(0, 28, n),
            **{c: rng.poisson(3 + seg_ids, n).astype(np.int64) for c in feature_counts},
            "pages_per_session": rng.gamma(2, 2, n),
            "avg_session_minutes": rng.gamma(2, 3, n),
            "bounce_rate": rng.uniform(0, 1, n),
            "product_share": rng.uniform(0, 1, n),
            "blog_share": rng.uniform(0, 0.5, n),
            "help_share": rng.uniform(0, 0.2, n),
            "add_to_cart_rate": rng.uniform(0, 1, n),
            "purchase_rate": rng.uniform(0, 0.3, n),
            "revenue": rng.gamma(1, 50, n) * (seg_ids == 0),
            "days_since_signup": rng.uniform(0, 300, n),
            "device": world.users["device"],
            "traffic_source": world.users["traffic_source"],
        }
    )
    profile_means = segmentation.PROFILE_FEATURES
    profiles = (
        features.join(segments, on="user_id")
        .group_by("segment_id", "segment_name")
        .agg(
            pl.len().alias("users"),
            *[pl.col(c).mean().cast(pl.Float64) for c in profile_means],
            buyer_share=(pl.col("purchases") > 0).mean(),
        )
        .with_columns(
            share=pl.col("users") / n,
            centroid_json=pl.lit("{}"),
            k=pl.lit(4, pl.Int64),
            silhouette=pl.lit(0.41),
            davies_bouldin=pl.lit(0.93),
            ward_silhouette=pl.lit(0.37),
            ward_agreement_ari=pl.lit(0.7),
            run_id=pl.lit("r1"),
        )
        .with_columns(pl.col("users").cast(pl.Int64))
    )
    segment_map = {str(k): v for k, v in SEGMENTS.items()}
    overall = daily.filter(pl.col("dimension") == "all").drop("dimension", "dimension_value")
    segment_trends = pl.concat(
        [
            overall.with_columns(segment_id=pl.lit("all"), segment_name=pl.lit("All users")),
            *[
                overall.with_columns(
                    pl.col(TREND_METRICS[:10]) // (i + 2),
                    segment_id=pl.lit(sid),
                    segment_name=pl.lit(name),
                )
                for i, (sid, name) in enumerate(segment_map.items())
            ],
        ],
        how="diagonal_relaxed",
    )

    models = ("logistic_regression", "random_forest", "xgboost")
    metrics_rows, card_rows, curve_rows = [], [], []
    for task in ("conversion", "bounce"):
        for i, model in enumerate(models):
            auc = 0.70 + 0.05 * i
            metrics_rows += [
                {
                    "task": task,
                    "label": f"{task} within 14 days",
                    "model": model,
                    "split": split,
                    "status": "ok",
                    "note": None,
                    "n": n,
                    "positives": n // 5,
                    "positive_rate": 0.2,
                    **{
                        f"{metric}{end}": value + shift
                        for metric, value in (
                            ("roc_auc", auc),
                            ("pr_auc", auc - 0.3),
                            ("brier", 0.1),
                            ("log_loss", 0.35),
                            ("f1", 0.5),
                            ("precision", 0.45),
                            ("recall", 0.56),
                            ("lift", 2.2),
                        )
                        for end, shift in (("", 0.0), ("_ci_low", -0.04), ("_ci_high", 0.04))
                    },
                    "threshold": 0.3,
                    "auc_vs_ceiling": auc / 0.9 if task == "conversion" else None,
                    "is_best": model == "xgboost",
                    "params_json": "{}",
                    "n_train": n,
                    "positives_train": n // 5,
                    "train_cutoff": cutoff - timedelta(days=42),
                    "valid_cutoff": cutoff - timedelta(days=28),
                    "test_cutoff": cutoff - timedelta(days=14),
                    "horizon_days": 14,
                    "model_version": "r1",
                }
                for split in ("validation", "test")
            ]
            card_rows.append(
                {
                    "model_version": "r1",
                    "task": task,
                    "model": model,
                    "is_best": model == "xgboost",
                    "features_json": json.dumps(["recency_days", "sessions", "device_mobile"]),
                    "params_json": "{}",
                    "chosen_on": "validation window",
                    "reported_on": "test window",
                    "reason_method": "XGBoost pred_contribs",
                    "train_cutoff": cutoff - timedelta(days=28),
                    "valid_cutoff": cutoff - timedelta(days=14),
                    "label_window_train_end": cutoff - timedelta(days=14),
                    "label_window_valid_end": cutoff,
                    "horizon_days": 14,
                    "lookback_days": 28,
                    "n_train": n,
                    "n_valid": n,
                    "metrics_json": json.dumps({"roc_auc": auc}),
                    "max_single_feature_auc": 0.71,
                    "leakiest_feature": "sessions",
                    "threshold": 0.3,
                    "artifact_path": f"models/r1/{task}_{model}.joblib",
                    "created_at": cutoff,
                }
            )
            grid = np.linspace(0, 1, 21)
            for curve, ys in (("roc", grid ** (0.4 + 0.1 * i)), ("pr", 1 - 0.6 * grid**0.5)):
                curve_rows += [
                    {
                        "task": task,
                        "model": model,
                        "curve": curve,
                        "point": p,
                        "x": float(x),
                        "y": float(y),
                        "threshold": float(1 - x),
                    }
                    for p, (x, y) in enumerate(zip(grid, ys, strict=True))
                ]
    metrics_rows.append(
        {
            **metrics_rows[0],
            "model": "true_propensity",
            "roc_auc": 0.9,
            "is_best": False,
            "auc_vs_ceiling": 1.0,
        }
    )
    conversion = rng.uniform(0, 1, n)
    at_risk_p = rng.uniform(0, 1, n)
    predictions = pl.DataFrame(
        {
            "user_id": users,
            "conversion_probability": conversion,
            "conversion_rank": (pl.Series(-conversion).rank("ordinal")).cast(pl.Int64),
            "at_risk_probability": at_risk_p,
            "at_risk": at_risk_p > 0.7,
            "at_risk_rank": (pl.Series(-at_risk_p).rank("ordinal")).cast(pl.Int64),
            "reason_1": "visited 5 product pages",
            "reason_2": "added to cart recently",
            "reason_3": "came back within 2 days",
            "conversion_model": "xgboost",
            "bounce_model": "xgboost",
            "model_version": "r1",
            "scored_at": [cutoff] * n,
        }
    )
    incident_tables = _incidents(_anomaly_history(daily), days)
    history = incident_tables[t.ANOMALY_HISTORY]
    latest = history.filter(pl.col("is_anomaly") & (pl.col("day") > as_of - timedelta(days=7)))
    if latest.is_empty():  # always show at least one flagged point on the page
        latest = history.filter(pl.col("is_anomaly")).tail(1)
    anomalies = latest.with_columns(as_of=pl.lit(as_of))
    kinds = ["conversion_drop", "traffic_spike", "bot_burst", "overall"]
    anomaly_scores = pl.DataFrame(
        {
            "detector": ["ensemble"] * 4 + ["rolling_3sigma"] * 4,
            "kind": kinds * 2,
            "injected": [1, 1, 1, 3] * 2,
            "detected": [1, 1, 0, 2, 1, 0, 0, 1],
            "false_positives": [0, 0, 0, 1, 0, 0, 0, 4],
            "precision": [1.0, 1.0, 0.0, 0.67, 1.0, 0.0, 0.0, 0.2],
            "recall": [1.0, 1.0, 0.0, 0.67, 1.0, 0.0, 0.0, 0.33],
            "f1": [1.0, 1.0, 0.0, 0.67, 1.0, 0.0, 0.0, 0.25],
            "note": ["incident overlaps the planted days (7-day grace)"] * 8,
            "incidents": [1, 1, 0, 3, 1, 0, 0, 5],
            "false_incidents_per_30_days": [0.0, 0.0, 0.0, 1.4, 0.0, 0.0, 0.0, 5.7],
            "mean_days_to_detect": [1.0, 0.0, None, 0.5, 3.0, None, None, 3.0],
            "scored_days": [21] * 8,
        }
    )
    retention = pl.DataFrame(
        [
            {
                "cohort_week": START + timedelta(weeks=c),
                "weeks_since": w,
                "cohort_size": 100,
                "active_users": int(100 * 0.6**w) if w else 100,
                "retention_rate": 0.6**w,
                "is_complete": True,
            }
            for c in range(4)
            for w in range(4 - c)
        ]
    ).with_columns(pl.col("weeks_since").cast(pl.Int32))
    lifecycle = pl.DataFrame(
        [
            {
                "week_start": START + timedelta(weeks=w),
                "state": s,
                "users": u,
                "signed_users": -u if s == "dormant" else u,
                "quick_ratio": 1.4,
                "is_complete": True,
            }
            for w in range(4)
            for s, u in (("new", 80), ("returning", 120), ("resurrecting", 30), ("dormant", 70))
        ]
    )
    summary = pl.DataFrame(
        [
            {
                "as_of": as_of,
                "period_start": as_of - timedelta(days=6),
                "period_end": as_of,
                "mode": "deterministic",
                "model": "none",
                "narrative": "**Sessions rose 4%** week on week; conversion held at 3.1%.",
                "facts_json": "{}",
                "source_tables": "daily_trends,anomalies",
                "missing_tables": "",
                "fallback_reason": "no GEMINI_API_KEY",
                "run_id": "r1",
                "generated_at": cutoff,
            }
        ]
    )
    page_ids = pages["page_id"].to_list()
    titles = dict(zip(page_ids, pages["title"].to_list(), strict=True))
    similar = pl.DataFrame(
        [
            {
                "page_id": p,
                "rank": r,
                "similar_page_id": page_ids[(i + r) % len(page_ids)],
                "similarity": 0.9 - 0.05 * r,
                "same_category": r < 3,
                "similar_title": titles[page_ids[(i + r) % len(page_ids)]],
            }
            for i, p in enumerate(page_ids)
            for r in range(1, 6)
        ]
    ).with_columns(pl.col("rank").cast(pl.Int32))
    recs = pl.DataFrame(
        [
            {
                "user_id": u,
                "rank": r,
                "page_id": page_ids[(i * 7 + r) % len(page_ids)],
                "title": titles[page_ids[(i * 7 + r) % len(page_ids)]],
                "score": 1.0 / r,
                "source": "hybrid" if i % 3 else "segment_popularity",
                "top_signal": "content",
                "reason": "similar to a page you viewed",
                "generated_at": cutoff,
            }
            for i, u in enumerate(users)
            for r in range(1, 6)
        ]
    ).with_columns(pl.col("rank").cast(pl.Int32))
    insights = pl.DataFrame(
        [
            {
                "insight_id": f"high_exit_page:{page_ids[0]}",
                "kind": "high_exit_page",
                "severity": "high",
                "subject": page_ids[0],
                "subject_title": titles[page_ids[0]],
                "metric": "exit_rate",
                "value": 0.71,
                "baseline": 0.35,
                "volume": 1200,
                "details": "71% of views end the visit against a median of 35%.",
                "suggested_action": "Add related products and a clear next step.",
                "as_of": as_of,
            },
            {
                "insight_id": "funnel_dropoff:add_to_cart -> checkout_start",
                "kind": "funnel_dropoff",
                "severity": "medium",
                "subject": "add_to_cart -> checkout_start",
                "subject_title": "Cart to checkout",
                "metric": "step_conversion",
                "value": 0.31,
                "baseline": 0.45,
                "volume": 800,
                "details": "31% continue against a usual 45%.",
                "suggested_action": "Simplify the cart page.",
                "as_of": as_of,
            },
        ]
    )
    methods = (
        "random",
        "global_popularity",
        "segment_popularity",
        "content",
        "item_knn",
        "user_knn",
        "hybrid",
    )
    evaluation = pl.DataFrame(
        [
            {
                "method": m,
                "is_baseline": m in methods[:3],
                "k": 10,
                "hr_at_k": 0.1 + 0.05 * i,
                "ndcg_at_k": 0.05 + 0.03 * i,
                "recall_at_k": 0.04 + 0.02 * i,
                "map_at_k": 0.03 + 0.01 * i,
                "coverage": 1.0 - 0.1 * i,
                "novelty": 7.0 - 0.3 * i,
                "users_evaluated": 250,
                "cutoff_ts": cutoff - timedelta(days=7),
                "test_end_ts": cutoff,
                "note": "",
            }
            for i, m in enumerate(methods)
        ]
    )
    rejects = pl.DataFrame(
        {
            "source_file": ["inbox/day1.csv", "inbox/day1.csv", "inbox/day2.csv"],
            "row_number": [3, 9, 1],
            "reason": [
                "bad_timestamp: 'yesterday'",
                "unknown_event_type: 'hover'",
                "bad_timestamp: ''",
            ],
            "raw": ['{"event_ts": "yesterday"}', '{"event_type": "hover"}', "{}"],
            "ingested_at": [cutoff] * 3,
        }
    )
    return {
        t.USERS: world.users,
        t.PAGES: pages,
        t.EVENTS: world.events,
        t.EVENT_REJECTS: rejects,
        t.USER_FEATURES: features,
        t.USER_SEGMENTS: segments,
        t.SEGMENT_PROFILES: profiles,
        t.SEGMENT_SCORES: pl.DataFrame(
            {"persona_ari": [0.66], "users_scored": [n], "segments": [4], "personas": [4]}
        ).with_columns(note=pl.lit(None, pl.String)),
        t.USER_MAP: segmentation.user_map(features, segments),
        t.MODEL_METRICS: pl.DataFrame(metrics_rows),
        t.MODEL_CARDS: pl.DataFrame(card_rows),
        t.MODEL_CURVES: pl.DataFrame(curve_rows),
        t.USER_PREDICTIONS: predictions,
        t.DAILY_TRENDS: daily,
        t.WEEKLY_TRENDS: weekly,
        t.SEGMENT_TRENDS: segment_trends,
        t.FUNNEL_DAILY: _funnel(days, None, rng),
        t.FUNNEL_DIMENSIONS: _funnel_dimensions(days, rng),
        t.FUNNEL_SEGMENTS: _funnel(days, segment_map, rng),
        t.RETENTION_COHORTS: retention,
        t.LIFECYCLE_WEEKLY: lifecycle,
        t.ANOMALIES: anomalies,
        t.ANOMALY_HISTORY: history,
        t.ANOMALY_SCORES: anomaly_scores,
        **incident_tables,
        t.SUMMARY: summary,
        t.SIMILAR_PAGES: similar,
        t.USER_RECOMMENDATIONS: recs,
        t.ADMIN_INSIGHTS: insights,
        t.REC_EVALUATION: evaluation,
    }


def build_snapshot(
    snapshot_dir: Path,
    *,
    omit: tuple[str, ...] = (),
    source: Path | None = None,
    replace: dict[str, pl.DataFrame] | None = None,
) -> Snapshot:
    """Publish a serving snapshot of a small synthetic world into ``snapshot_dir``.

    With ``source`` (an earlier snapshot file) its tables are re-published instead of generated,
    which is quicker; ``omit`` leaves tables out (a pipeline run that lacked their assets);
    ``replace`` publishes other contents for some tables (with ``source``).
    """
    con = duckdb.connect()
    if source is None:
        world = generate_world(WorldSpec(users=300, days=DAYS, seed=3, start_date=START))
        frames = contract_tables(world, np.random.default_rng(3))
        for name, frame in frames.items():
            con.register("frame_view", frame)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame_view')
            con.unregister("frame_view")
    else:
        path = str(source).replace("'", "''")  # ATTACH takes no parameters; a tmp_path file
        con.execute(f"ATTACH '{path}' AS source (READ_ONLY)")
        for name in t.SERVING_TABLES:
            if name in (replace or {}):
                con.register("frame_view", replace[name])
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame_view')
                con.unregister("frame_view")
            else:
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM source."{name}"')
    published = [n for n in t.SERVING_TABLES if n not in omit]
    now = datetime(2026, 2, 2, 3, 0, 0)
    meta = snapshot_meta_frame(
        "test-snapshot", "run-1", now, START, START + timedelta(days=DAYS - 1), published, omit
    )
    check = {"severity": "ERROR", "blocking": True, "evaluated_at": now, "run_id": "run-1"}
    checks = pl.DataFrame(
        [
            check
            | {"asset_key": "daily_trends", "check_name": "reconciles_with_events"}
            | {"status": "passed", "passed": True, "description": "totals match the events"},
            check
            | {"asset_key": "anomalies", "check_name": "detection_f1", "status": "failed"}
            | {"passed": False}
            | {"severity": "WARN", "blocking": False, "description": "F1 0.67 below 0.8"},
        ]
    )
    snap = publish_snapshot(
        con,
        published,
        snapshot_dir,
        "test-snapshot",
        extra={t.SNAPSHOT_META: meta, t.CHECK_RESULTS: checks},
    )
    con.close()
    return snap


# --- AppTest -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("dashboard") / "snapshots"
    build_snapshot(directory)
    return directory


@pytest.fixture
def serving(snapshot_dir, monkeypatch) -> Path:
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(snapshot_dir))
    return snapshot_dir


def _open(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page != "overview":
        at.switch_page(f"app_pages/{PAGE_FILES[page]}")
        at.run()
    return at


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# page -> (title, charts at least, tables at least, what else must be there)
EXPECTED = {
    "overview": ("Overview", 1, 1, lambda at: len(at.metric) == 6 and at.markdown),
    "trends": ("Trends", 1, 1, lambda at: at.selectbox(key="trend_metric")),
    "funnels": ("Funnels & retention", 3, 4, lambda at: len(at.metric) == 2),
    "segments": ("Segments", 4, 3, lambda at: len(at.metric) == 4),
    "predictions": ("Predictions", 2, 4, lambda at: len(at.tabs) == 2 and at.expander),
    "anomalies": (
        "Anomalies",
        4,  # contributors, the incident's series, the sensitivity curve, the timeline
        5,
        lambda at: at.selectbox(key="anomaly_metric") and at.selectbox(key="incident_pick"),
    ),
    "recommendations": ("Recommendations", 2, 3, lambda at: at.selectbox(key="rec_user")),
    "admin": ("Admin insights", 1, 1, lambda at: len(at.metric) == 3),
    "pipeline": ("Pipeline", 1, 3, lambda at: len(at.metric) >= 7),
}


@pytest.mark.parametrize("page", list(PAGE_FILES))
def test_every_page_renders_its_key_elements(serving, page):
    at = _open(page)
    _no_exception(at)
    title, charts, tables, extra = EXPECTED[page]
    assert at.title[0].value == title
    assert len(at.get("vega_lite_chart")) >= charts
    assert len(at.dataframe) >= tables
    # every table shown comes with a CSV download of exactly its rows
    assert len(at.get("download_button")) == len(at.dataframe)
    assert extra(at)
    assert "test-snapshot" in at.sidebar.caption[0].value


def test_empty_state_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(tmp_path / "nothing-published"))
    for page in ("overview", "predictions"):
        at = _open(page)
        _no_exception(at)
        assert at.title[0].value == "No data yet"
        assert at.code[0].value == "make up"


@pytest.mark.parametrize("broken", ["pointer", "file", "folder"])
def test_an_unreadable_snapshot_is_explained_not_a_traceback(broken, tmp_path, monkeypatch):
    directory = tmp_path / "snapshots"
    if broken == "folder":  # the snapshot folder is a file
        directory.write_text("not a folder")
    else:
        directory.mkdir()
        if broken == "pointer":
            (directory / "CURRENT").write_bytes(b"\xff\xfe\x00garbage")
        else:
            (directory / "damaged.duckdb").write_bytes(b"this is not a duckdb file" * 100)
            (directory / "CURRENT").write_text("damaged.duckdb\n")
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(directory))
    at = _open("overview")
    _no_exception(at)
    assert at.title[0].value == "No data yet"
    assert "cannot be read" in at.warning[0].value
    details = " ".join(c.value for c in at.caption)
    assert "snapshot" in details and "publish" in details


def test_missing_tables_get_a_note_not_an_error(snapshot_dir, tmp_path, monkeypatch):
    omit = (
        t.SUMMARY,
        t.MODEL_CURVES,
        t.ANOMALY_HISTORY,
        t.SEGMENT_TRENDS,
        t.REC_EVALUATION,
        t.ADMIN_INSIGHTS,
        t.LIFECYCLE_WEEKLY,
    )
    build_snapshot(tmp_path, omit=omit, source=snapshot_dir / "test-snapshot.duckdb")
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(tmp_path))
    notes = []
    for page in PAGE_FILES:
        at = _open(page)
        _no_exception(at)
        notes += [box.value for box in at.info]
    for table in omit:
        assert any(f"`{table}`" in note and "make up" in note for note in notes), table


def test_trend_controls_change_the_series(serving):
    at = _open("trends")
    at.selectbox(key="trend_metric").set_value("conversion_rate").run()
    at.segmented_control(key="trend_breakdown").set_value("device").run()
    _no_exception(at)
    shown = at.dataframe[-1].value
    assert set(shown["dimension"]) == {"device"}
    assert shown["dimension_value"].nunique() >= 2
    at.segmented_control(key="trend_grain").set_value("weekly").run()
    _no_exception(at)
    assert "week_start" in at.dataframe[-1].value.columns


def test_recommendation_lookup_shows_that_users_list(serving, snapshot_dir):
    at = _open("recommendations")
    user_id = "u0000007"
    at.selectbox(key="rec_user").set_value(user_id).run()
    _no_exception(at)
    recs = at.dataframe[0].value
    expected = _read(
        snapshot_dir,
        "SELECT page_id FROM user_recommendations WHERE user_id = ? ORDER BY rank",
        [user_id],
    )
    assert list(recs["page_id"]) == expected["page_id"].to_list()
    assert user_id in at.markdown[0].value
    at.text_input(key="rec_user_typed").input("no-such-user").run()
    _no_exception(at)
    assert "no-such-user" in at.warning[0].value


def test_a_new_snapshot_is_picked_up_on_the_next_run(snapshot_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(tmp_path))
    build_snapshot(tmp_path, source=snapshot_dir / "test-snapshot.duckdb")
    at = _open("pipeline")
    assert "test-snapshot" in at.markdown[0].value
    con = duckdb.connect()
    con.execute("CREATE TABLE users AS SELECT 'u1' AS user_id")
    publish_snapshot(con, [t.USERS], tmp_path, "second-snapshot")
    at.run()
    _no_exception(at)
    assert "second-snapshot" in at.markdown[0].value
    assert any("`daily_trends`" in box.value for box in at.info)


# --- data.py and ui.py on their own ---------------------------------------------------------


def _read(directory: Path, sql: str, params: list | None = None) -> pl.DataFrame:
    with duckdb.connect(str(directory / "test-snapshot.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).pl()


def test_kpis_compare_the_last_week_with_the_one_before(serving, snapshot_dir):
    from ubap_dashboard.data import source, trends

    period = trends.kpis(source.current())
    daily = _read(snapshot_dir, "SELECT * FROM daily_trends WHERE dimension = 'all' ORDER BY day")
    last = daily["day"].max()
    this_week = daily.filter(pl.col("day") > last - timedelta(days=7))
    week_before = daily.filter(
        (pl.col("day") <= last - timedelta(days=7)) & (pl.col("day") > last - timedelta(days=14))
    )
    by_metric = {k.metric: k for k in period.kpis}
    assert period.end == last and period.start == this_week["day"].min()
    assert by_metric["sessions"].value == this_week["sessions"].sum()
    assert by_metric["sessions"].previous == week_before["sessions"].sum()
    rate = this_week["converted_sessions"].sum() / this_week["sessions"].sum()
    assert by_metric["conversion_rate"].value == pytest.approx(rate)
    assert by_metric["revenue"].delta == pytest.approx(
        this_week["revenue"].sum() - week_before["revenue"].sum()
    )


def test_funnel_rates_follow_from_the_counts(serving):
    from ubap_dashboard.data import funnels, source

    steps = funnels.funnel(source.current(), None, None)
    assert steps["step"].to_list() == list(STEPS)
    counts = steps["sessions"].to_list()
    assert counts == sorted(counts, reverse=True)
    for i in range(1, len(counts)):
        assert steps["step_conversion"][i] == pytest.approx(counts[i] / counts[i - 1])
        assert steps["drop_off"][i] == pytest.approx(1 - counts[i] / counts[i - 1])
    assert steps["overall_conversion"][-1] == pytest.approx(counts[-1] / counts[0])


def test_funnel_breakdown_by_device_and_source_adds_up(serving):
    from ubap_dashboard.data import funnels, source

    snap = source.current()
    overall = funnels.funnel_breakdown(snap, None, None, "device")
    assert set(overall["group"]) == {"desktop", "mobile", "tablet"}
    by_step = overall.group_by("step_order").agg(pl.col("sessions").sum()).sort("step_order")
    dimensions = _read(serving, "SELECT * FROM funnel_dimensions")
    everyone = (
        dimensions.filter(pl.col("dimension") == "all")
        .group_by("step_index")
        .agg(pl.col("sessions").sum())
        .sort("step_index")
    )
    assert by_step["sessions"].to_list() == everyone["sessions"].to_list()
    for group in overall.partition_by("group"):
        counts = group.sort("step_order")["sessions"].to_list()
        assert counts == sorted(counts, reverse=True)
        shares = group.sort("step_order")["overall_conversion"].to_list()
        assert shares[0] == 1.0 and shares[-1] == pytest.approx(counts[-1] / counts[0])
    sources = funnels.funnel_breakdown(snap, START, START + timedelta(days=6), "traffic_source")
    assert set(sources["group"]) == {"organic", "paid", "direct"}
    table = funnels.funnel_by_group(sources)
    assert table.columns == ["group", *STEPS, "overall_conversion"]
    assert table["overall_conversion"].to_list() == sorted(
        table["overall_conversion"].to_list(), reverse=True
    )
    with pytest.raises(ValueError, match="funnel breakdown must be one of"):
        funnels.funnel_breakdown(snap, None, None, "country")


def test_funnel_page_breaks_down_by_device_source_and_segment(serving):
    at = _open("funnels")
    _no_exception(at)
    selector = at.radio(key="funnel_breakdown")
    assert selector.options == ["Device", "Traffic source", "Segment"]
    assert "not build yet" not in " ".join(c.value for c in at.caption)

    def breakdown_groups(app: AppTest) -> tuple[set[str], set[str]]:
        groups, titles = set(), set()
        for chart in app.get("vega_lite_chart"):
            spec = json.loads(chart.proto.spec)
            color = spec.get("encoding", {}).get("color", {})
            if color.get("field") != "group":
                continue
            titles.add(color.get("title"))
            for dataset in chart.proto.datasets:
                groups |= set(pl.read_ipc_stream(dataset.data.data)["group"].to_list())
        return groups, titles

    assert breakdown_groups(at) == ({"desktop", "mobile", "tablet"}, {"device"})
    selector.set_value("Traffic source").run()
    _no_exception(at)
    assert breakdown_groups(at) == ({"organic", "paid", "direct"}, {"traffic source"})
    table = next(f.value for f in at.dataframe if "group" in f.value.columns)
    assert set(table["group"]) == {"organic", "paid", "direct"}
    at.radio(key="funnel_breakdown").set_value("Segment").run()
    _no_exception(at)
    groups, titles = breakdown_groups(at)
    assert set(SEGMENTS.values()) <= groups and titles == {"segment"}
    shared = _open_with("funnels", funnel_breakdown="Traffic source")
    _no_exception(shared)
    assert breakdown_groups(shared) == ({"organic", "paid", "direct"}, {"traffic source"})


def test_user_map_is_a_sample_with_every_segment(serving):
    from ubap_dashboard.data import segments, source

    points = segments.user_map(source.current(), sample=150)
    assert points.height == 150
    assert points["user_id"].n_unique() == 150
    assert set(points["segment"]) <= set(SEGMENTS.values())
    assert points["segment"].n_unique() == len(SEGMENTS)
    assert points.select(pl.col("x", "y").is_finite().all()).row(0) == (True, True)
    assert points["x"].std() > 0


def test_bad_names_never_reach_sql(serving):
    from ubap_dashboard.data import source, trends

    snap = source.current()
    with pytest.raises(ValueError, match="unknown metric"):
        trends.trend_series(snap, "sessions; DROP TABLE users")
    with pytest.raises(ValueError, match="not a serving table"):
        source.table(snap, "duckdb_settings()")


def test_csv_download_flattens_nested_columns():
    from ubap_dashboard import ui

    frame = pl.DataFrame({"page_id": ["p1"], "embedding": [[0.5, 0.25]], "n": [3]})
    text = ui._csv(frame).decode()
    assert text.splitlines() == ["page_id,embedding,n", "p1,0.5;0.25,3"]


def test_a_pruned_snapshot_asks_for_a_rerun(tmp_path):
    from ubap_dashboard.data import source

    gone = Snapshot("gone", tmp_path / "gone.duckdb")
    with pytest.raises(source.SnapshotChanged):
        source.table(gone, t.USERS)


# --- incidents: the anomaly page, the annotations on the trend charts ----------------------------


def test_anomaly_page_lists_incidents_and_drills_into_one(serving, snapshot_dir):
    at = _open("anomalies")
    _no_exception(at)
    incidents = _read(snapshot_dir, "SELECT * FROM incidents ORDER BY end_day DESC")
    pick = at.selectbox(key="incident_pick")
    assert len(pick.options) == incidents.height == 2
    assert at.dataframe[0].value["incident_id"].to_list() == incidents["incident_id"].to_list()
    newest = incidents.row(0, named=True)
    assert pick.options[0].startswith(f"{newest['start_day']:%d %b} → {newest['end_day']:%d %b}")
    markdown = [m.value for m in at.markdown]
    assert f"**{newest['description']}**" in markdown
    captions = " ".join(c.value for c in at.caption)
    assert "mobile (device) accounts for 92% of the drop in conversion rate." in captions
    # the sensitivity curve, with the current threshold named under it
    assert "At the current threshold (4)" in captions
    assert "2 incident(s) on this history" in captions

    at.selectbox(key="incident_pick").set_value(1).run()
    _no_exception(at)
    other = incidents.row(1, named=True)
    assert f"**{other['description']}**" in [m.value for m in at.markdown]
    points = next(
        frame.value
        for frame in at.dataframe
        if "score" in frame.value.columns and "severity" in frame.value.columns
    )
    assert len(points) == other["n_points"]
    assert set(points["metric"]) <= set(other["metrics"])
    charts = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    assert any('"incident window"' in json.dumps(spec) for spec in charts), "no shaded window"


def _incident_labels(at: AppTest) -> list[str]:
    """The headline labels drawn on the page's charts' incident windows."""
    found = []
    for chart in at.get("vega_lite_chart"):
        if "incident window" not in chart.proto.spec:
            continue
        for dataset in chart.proto.datasets:
            frame = pl.read_ipc_stream(dataset.data.data)
            if "label" in frame.columns and "involves" in frame.columns:
                found += frame["label"].to_list()
    return found


@pytest.mark.parametrize("page", ["trends", "overview"])
def test_trend_charts_shade_the_incidents(serving, page):
    at = _open(page)
    _no_exception(at)
    labels = _incident_labels(at)
    assert "Sessions drop -40%" in labels and "Conversion rate drop -38%" in labels
    captions = " ".join(c.value for c in at.caption)
    assert "Shaded: 2 incident(s)" in captions
    assert "Sessions drop -40% (17 Jan → 20 Jan)" in captions
    if page == "overview":  # the warning speaks in incidents: those of the chosen period
        at.segmented_control(key="period").set_value("7 days").run()
        warning = at.warning[0].value
        assert warning.startswith("1 incident(s) since")
        assert "**Conversion rate** (medium, ongoing): Conversion rate fell 38%" in warning
    if page == "trends":  # a range that ends before the second incident shades only the first
        at.segmented_control(key="period").set_value("Custom").run()
        at.date_input(key="dates").set_value((START, START + timedelta(days=16))).run()
        _no_exception(at)
        assert _incident_labels(at) == ["Sessions drop -40%"]
        at.date_input(key="dates").set_value((START, START + timedelta(days=10))).run()
        assert _incident_labels(at) == []
        assert "Shaded" not in " ".join(c.value for c in at.caption)


def test_no_incident_says_nothing_flagged_or_why_nothing_could_be_scored(
    snapshot_dir, tmp_path, monkeypatch
):
    source = snapshot_dir / "test-snapshot.duckdb"
    history = _read(snapshot_dir, "SELECT * FROM anomaly_history")
    no_incidents = _read(snapshot_dir, "SELECT * FROM incidents WHERE FALSE")
    scored = history.with_columns(note=pl.lit(None, pl.String))
    quiet = tmp_path / "quiet"
    build_snapshot(
        quiet,
        source=source,
        replace={t.INCIDENTS: no_incidents, t.ANOMALY_HISTORY: scored},
    )
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(quiet))
    at = _open("anomalies")
    _no_exception(at)
    assert [s.value for s in at.success][:2] == [
        "Nothing flagged: every scored day stayed within its expected range.",
        "Every day of every scope and metric has a score.",
    ]
    assert not at.warning

    reason = "no sessions that day"
    unscorable = history.with_columns(note=pl.lit(reason))
    blind = tmp_path / "blind"
    build_snapshot(
        blind,
        source=source,
        replace={t.INCIDENTS: no_incidents, t.ANOMALY_HISTORY: unscorable},
    )
    monkeypatch.setenv("UBAP_SNAPSHOT_DIR", str(blind))
    at = _open("anomalies")
    _no_exception(at)
    assert not any("Nothing flagged" in s.value for s in at.success)
    assert any(reason in w.value and "could not be scored" in w.value for w in at.warning)
    unscored = next(f.value for f in at.dataframe if "reason" in f.value.columns)
    assert set(unscored["reason"]) == {reason}


# --- the global date range, comparisons, labels and exports (the analyst's experience) ----------


def _open_with(page: str, **params) -> AppTest:
    """A page opened from a shared URL carrying ``params`` as query parameters."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(params)
    at.run()
    if page != "overview":
        at.switch_page(f"app_pages/{PAGE_FILES[page]}")
        at.run()
    return at


def _all_metrics(at: AppTest):
    return next(f.value for f in reversed(at.dataframe) if "sessions" in f.value.columns)


def _daily(snapshot_dir: Path) -> pl.DataFrame:
    return _read(snapshot_dir, "SELECT * FROM daily_trends WHERE dimension = 'all' ORDER BY day")


def test_the_date_range_comes_from_the_url_and_changes_every_page(serving, snapshot_dir):
    last = _daily(snapshot_dir)["day"].max()
    at = _open_with("trends", period="7 days")
    _no_exception(at)
    control = at.sidebar.segmented_control(key="period")
    assert control.value == "7 days"
    # bound to the URL: the browser writes each change back as ?period=...
    assert control.proto.query_param_key == "period"
    assert at.toggle(key="compare").proto.query_param_key == "compare"
    days = _all_metrics(at)["day"]
    assert days.nunique() == 7 and days.max().date() == last
    assert at.query_params["period"] == "7 days"

    control.set_value("All").run()
    _no_exception(at)
    assert _all_metrics(at)["day"].nunique() == DAYS

    # a custom range, shared as repeated dates, survives a switch to another page
    first_day, last_day = START + timedelta(days=3), START + timedelta(days=9)
    at = _open_with("funnels", period="Custom", dates=[str(first_day), str(last_day)])
    _no_exception(at)
    funnel = next(f.value for f in at.dataframe if "step_conversion" in f.value.columns)
    expected = _read(
        snapshot_dir,
        "SELECT sum(sessions) AS n FROM funnel_daily WHERE step_index = 1 AND day BETWEEN ? AND ?",
        [first_day, last_day],
    )
    assert funnel["sessions"][0] == expected["n"][0]
    at.switch_page("app_pages/trends.py").run()
    _no_exception(at)
    shown = _all_metrics(at)["day"]
    assert shown.min().date() == first_day and shown.max().date() == last_day


def test_comparison_shows_previous_values_and_rate_changes_in_pp(serving, snapshot_dir):
    daily = _daily(snapshot_dir)
    last = daily["day"].max()
    now = daily.filter(pl.col("day") > last - timedelta(days=7))
    before = daily.filter(
        (pl.col("day") <= last - timedelta(days=7)) & (pl.col("day") > last - timedelta(days=14))
    )

    def rate(frame):
        return frame["converted_sessions"].sum() / frame["sessions"].sum()

    at = _open_with("trends", period="7 days")
    at.selectbox(key="trend_metric").set_value("conversion_rate").run()
    _no_exception(at)
    card = at.metric[0]
    assert card.value == f"{rate(now):.1%}"
    assert card.delta == f"{(rate(now) - rate(before)) * 100:+.1f} pp"
    compared = next(f.value for f in at.dataframe if "previous" in f.value.columns)
    assert compared["previous"][0] == pytest.approx(rate(before))
    assert compared["change"][0] == pytest.approx((rate(now) - rate(before)) * 100)
    # the previous period is drawn, dashed, on the current dates
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "previous period" in spec and "strokeDash" in spec

    at.selectbox(key="trend_metric").set_value("sessions").run()
    sessions = at.metric[0]
    change = (now["sessions"].sum() - before["sessions"].sum()) / before["sessions"].sum()
    assert sessions.value == f"{now['sessions'].sum():,}"
    assert sessions.delta == f"{change:+.1%}"

    # Overview's cards: the same period and rule, money with its symbol
    at = _open_with("overview", period="7 days")
    cards = {m.label: m for m in at.metric}
    assert cards["Conversion rate"].delta == f"{(rate(now) - rate(before)) * 100:+.1f} pp"
    assert cards["Revenue"].value.startswith("$")
    at.toggle(key="compare").set_value(False).run()
    assert all(not m.delta for m in at.metric)
    assert "previous period" not in at.get("vega_lite_chart")[0].proto.spec


def _headers(frame_element) -> dict[str, str]:
    """Column -> the header a person sees (the column_config label, else the name)."""
    config = json.loads(frame_element.proto.columns or "{}")
    return {
        column: (config.get(column) or {}).get("label") or column
        for column in frame_element.value.columns
    }


@pytest.mark.parametrize("page", ["overview", "trends", "funnels", "segments", "predictions"])
def test_tables_show_readable_headers(serving, page):
    at = _open_with(page, period="All")
    _no_exception(at)
    for frame in at.dataframe:
        snake = [h for h in _headers(frame).values() if "_" in h]
        assert not snake, f"{page}: snake_case headers {snake}"
        config = json.loads(frame.proto.columns or "{}")
        for column in frame.value.columns:  # rates as %, money with its symbol
            shown_as = config.get(column, {}).get("type_config", {}).get("format")
            if column.endswith(("_rate", "_share", "conversion")):
                assert shown_as == "percent", (page, column, shown_as)
            if column == "revenue":
                assert shown_as == "dollar", (page, column, shown_as)


def test_the_summary_names_its_provenance_once(serving):
    at = _open("overview")
    text = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])
    assert text.count("Deterministic summary (no LLM)") == 1


def test_a_user_list_exports_as_a_cohort_with_the_columns_shown(serving):
    from ubap_dashboard import ui
    from ubap_dashboard.data import predictions, source

    at = _open("predictions")
    _no_exception(at)
    shown = at.dataframe[0].value
    button = at.get("download_button")[0]
    assert button.proto.label == f"Export these {len(shown)} users as a cohort (CSV)"
    users = predictions.prediction_list(source.current(), "high_value", len(shown))
    cohort = pl.read_csv(ui._csv(users))
    assert cohort.columns == list(shown.columns)
    assert cohort.columns[0] == "user_id" and {"why_1", "why_2", "why_3"} <= set(cohort.columns)
    assert cohort["user_id"].to_list() == list(shown["user_id"])
    assert cohort["why_1"][0] == "visited 5 product pages"
    # the model in use is named in full, and a per-segment outlook is drawn
    assert "**xgboost**" in [m.value for m in at.markdown]
    outlook = next(f.value for f in at.dataframe if "at_risk_share" in f.value.columns)
    assert set(outlook["segment_name"]) == set(SEGMENTS.values())
    assert outlook["users"].sum() == len(_read_users(serving))


def _read_users(directory: Path) -> pl.DataFrame:
    return _read(directory, "SELECT user_id FROM user_predictions")


def test_retention_leaves_out_the_pre_data_cohort_unless_asked(serving):
    at = _open("funnels")
    _no_exception(at)
    retention = next(f.value for f in at.dataframe if "retention" in f.value.columns)
    assert START not in {d.date() for d in retention["cohort_week"]}
    captions = " ".join(c.value for c in at.caption)
    assert f"The cohort of {START} is left out" in captions
    assert "new users and quick ratio are inflated" in captions
    at.toggle(key="retention_pre_data").set_value(True).run()
    retention = next(f.value for f in at.dataframe if "retention" in f.value.columns)
    assert START in {d.date() for d in retention["cohort_week"]}
    cohorts = [
        label
        for chart in at.get("vega_lite_chart")
        for dataset in chart.proto.datasets
        for frame in [pl.read_ipc_stream(dataset.data.data)]
        if "cohort" in frame.columns
        for label in frame["cohort"].to_list()
    ]
    assert f"{START} (incl. pre-data users)" in cohorts


def test_funnel_bars_say_share_of_first_step_and_step_rate():
    from ubap_dashboard import charts

    steps = pl.DataFrame(
        {
            "step_order": [1, 2, 3],
            "step": ["page_view", "add_to_cart", "purchase"],
            "sessions": [1000, 400, 340],
            "step_conversion": [1.0, 0.4, 0.85],
            "overall_conversion": [1.0, 0.4, 0.34],
            "drop_off": [0.0, 0.6, 0.15],
        }
    )
    labels = charts.funnel_labels(steps)["label"].to_list()
    assert labels == [
        "100% of first step",
        "40.0% of first step · step 40.0%",
        "34.0% of first step · step 85.0%",
    ]
    spec = charts.funnel(steps).to_dict()
    titles = {t["title"] for layer in spec["layer"] for t in layer["encoding"]["tooltip"]}
    assert {charts.OF_FIRST_STEP, charts.STEP_RATE} <= titles


def test_trend_lines_are_straight_with_weekly_ticks_and_a_named_legend():
    from ubap_dashboard import charts

    frame = pl.DataFrame(
        {"day": [START, START + timedelta(weeks=1)], "segment": ["mobile"] * 2, "value": [1, 2]}
    )
    spec = charts.trend_line(frame, color="segment", color_title="device", weekly=True).to_dict()
    assert spec["mark"]["interpolate"] == "linear"
    assert spec["encoding"]["color"]["title"] == "device"
    assert spec["encoding"]["x"]["axis"]["tickCount"] == {"interval": "week", "step": 1}
