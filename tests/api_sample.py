"""A complete serving snapshot built without Dagster: for tests, the benchmark and demos.

The behaviour data comes from the real generator; trends, funnels, retention, lifecycle,
features, segments and anomalies come from the real ``ubap_assets.core`` code. Predictions,
model metrics, recommendations, insights, the recommender evaluation and the summary are
simple deterministic stand-ins with the documented columns (docs/tables/*.md), computed from
the same events, so every endpoint has data. Nothing here is a model or a reported metric.
"""

import atexit
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import duckdb
import polars as pl

from ubap_assets.core import anomalies, features, segmentation, trends
from ubap_assets.core.daily import build_all_daily
from ubap_assets.core.synthetic import World, WorldSpec, generate_world
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.snapshots import (
    CHECK_RESULTS_SCHEMA,
    TABLE_STATUS,
    TABLE_STATUS_SCHEMA,
    Snapshot,
    publish_snapshot,
    snapshot_meta_frame,
)

SAMPLE_NOTE = "sample stand-in (tests.api_sample), not a trained model"


def _store(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register("ubap_sample_frame", frame)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM ubap_sample_frame')
    finally:
        con.unregister("ubap_sample_frame")


def _sql(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> None:
    con.execute(f'CREATE OR REPLACE TABLE "{name}" AS {sql}')


def build_warehouse(
    con: duckdb.DuckDBPyConnection, world: World, *, kmeans: bool = True, k_max: int = 6
) -> None:
    """Write every serving table for ``world`` into ``con`` (a scratch warehouse)."""
    for name, frame in (
        (t.USERS, world.users),
        (t.PAGES, world.pages),
        (t.EVENTS, world.events),
        (t.USER_PERSONAS, world.personas),
        (t.INJECTED_ANOMALIES, world.anomalies),
    ):
        _store(con, name, frame)

    build_all_daily(con)  # sessions and user_daily, which the features read
    first, end = features.daily_span(con)
    feats = features.compute_features(con, end, (end - first).days)
    _store(con, t.USER_FEATURES, feats)
    _segments(con, feats, world, kmeans=kmeans, k_max=k_max)

    trends.build_sessions(con)  # the one pass over events that the trend functions read
    daily = trends.daily_trends(con)
    segment_daily = trends.segment_trends(con)
    for name, frame in (
        (t.DAILY_TRENDS, daily),
        (t.WEEKLY_TRENDS, trends.weekly_trends(con)),
        (t.SEGMENT_TRENDS, segment_daily),
        (t.FUNNEL_DAILY, trends.funnel_daily(con)),
        (t.FUNNEL_DIMENSIONS, trends.funnel_dimensions(con)),
        (t.FUNNEL_SEGMENTS, trends.funnel_segments(con)),
        (t.RETENTION_COHORTS, trends.retention_cohorts(con)),
        (t.LIFECYCLE_WEEKLY, trends.lifecycle_weekly(con)),
    ):
        _store(con, name, frame)

    settings = anomalies.DetectorSettings()
    series = anomalies.monitored_series(
        daily,
        segment_daily,
        trends.funnel_daily(con),
        trends.funnel_segments(con),
        trends.funnel_dimensions(con),
    )
    history = anomalies.detect(series, settings)
    history, incidents, contributors = anomalies.build_incidents(history, series, settings)
    _store(con, t.ANOMALY_HISTORY, history)
    _store(con, t.INCIDENTS, incidents)
    _store(con, t.INCIDENT_CONTRIBUTORS, contributors)
    _store(con, t.ANOMALY_SENSITIVITY, anomalies.sensitivity(history, settings))
    _store(con, t.ANOMALIES, anomalies.latest(history, 7))
    _store(con, t.ANOMALY_SCORES, anomalies.score_detection(history, world.anomalies)[0])

    _predictions(con, end)
    _recommendations(con, end)
    _summary(con, daily)


def _segments(
    con: duckdb.DuckDBPyConnection, feats: pl.DataFrame, world: World, *, kmeans: bool, k_max: int
) -> None:
    if kmeans:
        result = segmentation.segment_users(feats, k_min=3, k_max=k_max, seed=0, run_id="sample")
        _store(con, t.USER_SEGMENTS, result.segments)
        _store(con, t.SEGMENT_PROFILES, result.profiles)
        _store(
            con, t.SEGMENT_SCORES, segmentation.persona_agreement(result.segments, world.personas)
        )
        return
    # Large worlds: one segment per latent persona (cheap), same columns.
    _sql(
        con,
        t.USER_SEGMENTS,
        f"""SELECT user_id, dense_rank() OVER (ORDER BY persona) - 1 AS segment_id,
                   upper(persona[1]) || persona[2:] || 's' AS segment_name,
                   dense_rank() OVER (ORDER BY persona) - 1 AS ward_segment_id,
                   0.0 AS distance_to_centroid, 'sample' AS run_id
            FROM {t.USER_PERSONAS}""",
    )
    segments = con.execute(f"SELECT * FROM {t.USER_SEGMENTS}").pl()
    _store(con, t.SEGMENT_SCORES, segmentation.persona_agreement(segments, world.personas))
    _sql(
        con,
        t.SEGMENT_PROFILES,
        f"""SELECT s.segment_id, any_value(s.segment_name) AS segment_name, count(*) AS users,
                   count(*) / (SELECT count(*) FROM {t.USER_SEGMENTS}) AS share,
                   avg((f.purchases > 0)::DOUBLE) AS buyer_share,
                   avg(f.sessions)::DOUBLE AS sessions,
                   avg(f.pages_per_session) AS pages_per_session,
                   avg(f.avg_session_minutes) AS avg_session_minutes,
                   avg(f.bounce_rate) AS bounce_rate, avg(f.product_share) AS product_share,
                   avg(f.blog_share) AS blog_share, avg(f.help_share) AS help_share,
                   avg(f.add_to_cart_rate) AS add_to_cart_rate,
                   avg(f.purchases)::DOUBLE AS purchases, avg(f.revenue) AS revenue,
                   avg(f.recency_days) AS recency_days, avg(f.active_days)::DOUBLE AS active_days,
                   '{{}}' AS centroid_json,
                   (SELECT count(DISTINCT segment_id) FROM {t.USER_SEGMENTS}) AS k,
                   0.0 AS silhouette, 0.0 AS davies_bouldin, 0.0 AS ward_silhouette,
                   1.0 AS ward_agreement_ari, 'sample' AS run_id
            FROM {t.USER_SEGMENTS} s JOIN {t.USER_FEATURES} f USING (user_id)
            GROUP BY s.segment_id""",
    )


def _predictions(con: duckdb.DuckDBPyConnection, end: datetime) -> None:
    """Scores from behaviour counts (monotone in purchases/cart/bounces), ranked; the metrics
    in model_metrics' columns (a validation and a test row per task, with intervals)."""
    _sql(
        con,
        t.USER_PREDICTIONS,
        f"""WITH s AS (
                SELECT user_id,
                       least(0.99, 0.02 + 0.18 * ln(1 + purchases) + 0.06 * ln(1 + add_to_cart)
                             + 0.03 * ln(1 + sessions_last_7d)) AS conversion_probability,
                       least(0.99, 0.05 + 0.8 * bounce_rate
                             + 0.1 * least(1.0, recency_days / 14)) AS at_risk_probability,
                       purchases, add_to_cart, sessions_last_7d, bounce_rate, recency_days
                FROM {t.USER_FEATURES})
            SELECT user_id, conversion_probability,
                   row_number() OVER (ORDER BY conversion_probability DESC, user_id)
                       AS conversion_rank,
                   at_risk_probability, at_risk_probability >= 0.5 AS at_risk,
                   row_number() OVER (ORDER BY at_risk_probability DESC, user_id) AS at_risk_rank,
                   'purchased ' || purchases || ' times' AS reason_1,
                   'added ' || add_to_cart || ' items to the cart' AS reason_2,
                   CASE WHEN sessions_last_7d > 0
                        THEN sessions_last_7d || ' sessions in the last 7 days' END AS reason_3,
                   round(100 * bounce_rate) || '% of visits bounced' AS at_risk_reason_1,
                   'last visit ' || round(recency_days) || ' days ago' AS at_risk_reason_2,
                   NULL::VARCHAR AS at_risk_reason_3,
                   'sample_scorer' AS conversion_model, 'sample_scorer' AS bounce_model,
                   'sample weights' AS conversion_reason_method,
                   'sample weights' AS at_risk_reason_method,
                   NULL::VARCHAR AS conversion_note, NULL::VARCHAR AS bounce_note,
                   'sample' AS model_version, TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}' AS scored_at
            FROM s""",
    )
    _sql(
        con,
        t.MODEL_METRICS,
        f"""SELECT task, label, 'sample_scorer' AS model, split, 'ok' AS status,
                   NULL::VARCHAR AS note, n, positives, positives / n AS positive_rate,
                   0.5 AS roc_auc, 0.45 AS roc_auc_ci_low, 0.55 AS roc_auc_ci_high,
                   positives / n AS pr_auc, 0.8 * positives / n AS pr_auc_ci_low,
                   1.2 * positives / n AS pr_auc_ci_high,
                   NULL::DOUBLE AS brier, NULL::DOUBLE AS brier_ci_low,
                   NULL::DOUBLE AS brier_ci_high, NULL::DOUBLE AS log_loss,
                   NULL::DOUBLE AS log_loss_ci_low, NULL::DOUBLE AS log_loss_ci_high,
                   NULL::DOUBLE AS f1, NULL::DOUBLE AS f1_ci_low, NULL::DOUBLE AS f1_ci_high,
                   NULL::DOUBLE AS precision, NULL::DOUBLE AS precision_ci_low,
                   NULL::DOUBLE AS precision_ci_high, NULL::DOUBLE AS recall,
                   NULL::DOUBLE AS recall_ci_low, NULL::DOUBLE AS recall_ci_high,
                   NULL::DOUBLE AS lift, NULL::DOUBLE AS lift_ci_low, NULL::DOUBLE AS lift_ci_high,
                   0.5 AS threshold, NULL::DOUBLE AS auc_vs_ceiling, TRUE AS is_best,
                   '{{}}' AS params_json, n AS n_train, positives AS positives_train,
                   NULL::TIMESTAMP AS train_cutoff, NULL::TIMESTAMP AS valid_cutoff,
                   NULL::TIMESTAMP AS test_cutoff, 14 AS horizon_days, 'sample' AS model_version
            FROM (SELECT 'conversion' AS task, 'purchase within 14 days' AS label, count(*) AS n,
                         count(*) FILTER (purchases > 0) AS positives FROM {t.USER_FEATURES}
                  UNION ALL
                  SELECT 'bounce', 'next session within 14 days bounces', count(*),
                         count(*) FILTER (bounce_rate >= 0.5) FROM {t.USER_FEATURES})
            CROSS JOIN (VALUES ('validation'), ('test')) AS splits(split)""",
    )


def _recommendations(con: duckdb.DuckDBPyConnection, end: datetime, k: int = 10) -> None:
    """Popular pages of the user's most viewed category, then globally popular pages."""
    as_of = f"TIMESTAMP '{end - timedelta(microseconds=1):%Y-%m-%d %H:%M:%S}'"
    _sql(
        con,
        t.USER_RECOMMENDATIONS,
        f"""WITH views AS (
                SELECT e.user_id, p.category, count(*) AS n FROM {t.EVENTS} e
                JOIN {t.PAGES} p USING (page_id) WHERE e.event_type = 'page_view'
                GROUP BY ALL),
            fav AS (SELECT user_id, arg_max(category, n) AS category FROM views GROUP BY 1),
            pop AS (SELECT page_id, count(*) AS views FROM {t.EVENTS}
                    WHERE event_type = 'page_view' GROUP BY 1),
            ranked AS (
                SELECT u.user_id, p.page_id, p.title, pop.views,
                       coalesce(p.category = f.category, FALSE) AS in_fav, f.category AS fav,
                       row_number() OVER (PARTITION BY u.user_id
                           ORDER BY coalesce(p.category = f.category, FALSE) DESC, pop.views DESC,
                                    p.page_id) AS rank
                FROM {t.USERS} u LEFT JOIN fav f USING (user_id)
                CROSS JOIN {t.PAGES} p JOIN pop USING (page_id)
                QUALIFY rank <= {k})
            SELECT user_id, CAST(rank AS INTEGER) AS rank, page_id, title,
                   views / (SELECT max(views) FROM pop) AS score,
                   CASE WHEN in_fav THEN 'segment_popularity' ELSE 'global_popularity' END
                       AS source,
                   CASE WHEN in_fav THEN 'segment_popularity' ELSE 'global_popularity' END
                       AS top_signal,
                   CASE WHEN in_fav THEN 'popular in ' || fav || ', a category you read often'
                        ELSE 'popular with everybody' END AS reason,
                   {as_of} AS generated_at
            FROM ranked""",
    )
    _sql(
        con,
        t.SIMILAR_PAGES,
        f"""SELECT a.page_id,
                   CAST(row_number() OVER (PARTITION BY a.page_id ORDER BY
                        (a.category = b.category) DESC, abs(coalesce(a.price, 0)
                        - coalesce(b.price, 0)), b.page_id) AS INTEGER) AS rank,
                   b.page_id AS similar_page_id,
                   CASE WHEN a.category = b.category THEN 0.9 ELSE 0.1 END
                       - least(0.09, abs(coalesce(a.price, 0) - coalesce(b.price, 0)) / 10000)
                       AS similarity,
                   a.category = b.category AS same_category, b.title AS similar_title
            FROM {t.PAGES} a JOIN {t.PAGES} b ON a.page_id <> b.page_id
            QUALIFY rank <= {k}""",
    )
    _sql(
        con,
        t.ADMIN_INSIGHTS,
        f"""WITH last_view AS (
                SELECT session_id, arg_max(page_id, event_ts) AS page_id FROM {t.EVENTS}
                WHERE event_type = 'page_view' GROUP BY 1),
            per_page AS (
                SELECT p.page_id, p.title, count(*) AS views,
                       (SELECT count(*) FROM last_view l WHERE l.page_id = p.page_id) AS exits
                FROM {t.EVENTS} e JOIN {t.PAGES} p USING (page_id)
                WHERE e.event_type = 'page_view' GROUP BY ALL),
            scored AS (
                SELECT *, exits / views AS exit_rate,
                       median(exits / views) OVER () AS site_median FROM per_page)
            SELECT 'high_exit_page:' || page_id AS insight_id, 'high_exit_page' AS kind,
                   CASE WHEN exit_rate > 1.5 * site_median THEN 'high'
                        WHEN exit_rate > 1.2 * site_median THEN 'medium' ELSE 'low' END
                       AS severity,
                   page_id AS subject, title AS subject_title, 'exit_rate' AS metric,
                   exit_rate AS value, site_median AS baseline, views AS volume,
                   printf('%.0f%% of %d views end the session here (site median %.0f%%)',
                          100 * exit_rate, views, 100 * site_median) AS details,
                   'review the page content and its links onward' AS suggested_action,
                   CAST({as_of} AS DATE) AS as_of
            FROM scored ORDER BY exit_rate DESC LIMIT 8""",
    )
    _sql(
        con,
        t.REC_EVALUATION,
        f"""SELECT method, method <> 'segment_popularity' AS is_baseline,
                   CASE WHEN users >= 100 THEN 'ok' ELSE 'insufficient data' END AS status,
                   {k} AS k, (SELECT count(*) FROM {t.PAGES}) AS candidate_pages,
                   users AS users_evaluated,
                   hr AS hr_at_k, hr / 2 AS ndcg_at_k, hr / 2 * 0.9 AS ndcg_ci_low,
                   least(hr / 2 * 1.1, 1.0) AS ndcg_ci_high, hr / 3 AS recall_at_k,
                   hr / 3 * 0.9 AS recall_ci_low, least(hr / 3 * 1.1, 1.0) AS recall_ci_high,
                   hr / 4 AS map_at_k, least(coverage, 1.0) AS coverage, 1.0 AS novelty,
                   0.0 AS ndcg_minus_popularity_ci_low, 0.0 AS ndcg_minus_popularity_ci_high,
                   hr / 2 AS validation_ndcg_at_k, users AS validation_users,
                   NULL::DOUBLE AS half_life_days, 500.0 AS ease_lambda, 0.0 AS w_content,
                   0.0 AS w_collaborative, 1.0 AS w_popularity, 'engaged' AS exclude,
                   TRUE AS is_served, 'served: the stand-in has one method' AS selection,
                   {as_of} - INTERVAL 14 DAY AS validation_start_ts,
                   {as_of} - INTERVAL 7 DAY AS cutoff_ts, {as_of} AS test_end_ts,
                   '{SAMPLE_NOTE}' AS note
            FROM (SELECT 'segment_popularity' AS method,
                         avg(hit::DOUBLE) AS hr, count(*) AS users,
                         (SELECT count(DISTINCT page_id) FROM {t.USER_RECOMMENDATIONS})
                             / (SELECT count(*) FROM {t.PAGES}) AS coverage
                  FROM (SELECT r.user_id, bool_or(e.page_id IS NOT NULL) AS hit
                        FROM {t.USER_RECOMMENDATIONS} r LEFT JOIN {t.EVENTS} e
                          ON e.user_id = r.user_id AND e.page_id = r.page_id
                         AND e.event_ts >= {as_of} - INTERVAL 7 DAY
                        GROUP BY r.user_id))""",
    )


def _summary(con: duckdb.DuckDBPyConnection, daily: pl.DataFrame) -> None:
    complete = daily.filter(pl.col("is_complete") & (pl.col("dimension") == "all")).sort("day")
    week = complete.tail(7)
    if week.is_empty():
        _store(con, t.SUMMARY, pl.DataFrame(schema={"as_of": pl.Date}))
        return
    facts = {
        "sessions": int(week["sessions"].sum()),
        "active_users_mean": round(float(week["active_users"].mean()), 1),
        "revenue": round(float(week["revenue"].sum()), 2),
        "conversion_rate_mean": round(float(week["conversion_rate"].mean()), 4),
    }
    narrative = (
        f"**{week['day'][0]} to {week['day'][-1]}**: {facts['sessions']:,} sessions, "
        f"{facts['active_users_mean']:,} active users a day, revenue {facts['revenue']:,.2f}, "
        f"conversion {facts['conversion_rate_mean']:.2%}."
    )
    frame = pl.DataFrame(
        [
            {
                "as_of": week["day"][-1],
                "period_start": week["day"][0],
                "period_end": week["day"][-1],
                "mode": "deterministic",
                "model": "none",
                "narrative": narrative,
                "facts_json": pl.Series([facts]).struct.json_encode()[0],
                "source_tables": t.DAILY_TRENDS,
                "missing_tables": "",
                "fallback_reason": SAMPLE_NOTE,
                "run_id": "sample",
                "generated_at": datetime.now(UTC).replace(tzinfo=None),
            }
        ]
    )
    _store(con, t.SUMMARY, frame)


@lru_cache(maxsize=4)
def sample_warehouse(spec: WorldSpec, kmeans: bool = True) -> Path:
    """A scratch warehouse file for ``spec``, built once per process (tests, benchmark)."""
    folder = Path(tempfile.mkdtemp(prefix="ubap-sample-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        build_warehouse(con, generate_world(spec), kmeans=kmeans)
    return path


def publish_sample(
    con: duckdb.DuckDBPyConnection,
    snapshot_dir: Path,
    snapshot_id: str,
    *,
    keep: int = 3,
    skip: tuple[str, ...] = (),
    not_refreshed: dict[str, str] | None = None,
) -> Snapshot:
    """Publish the serving tables in ``con`` (minus ``skip``) as a snapshot, with meta; with
    ``not_refreshed`` ({table: reason}) also a table_status marking those tables stale."""
    present = warehouse_tables(con)
    copied = [n for n in t.SERVING_TABLES if n in present and n not in skip]
    missing = [n for n in t.SERVING_TABLES if n not in copied]
    lo, hi = con.execute(
        f"SELECT min(event_ts)::DATE, max(event_ts)::DATE FROM {t.EVENTS}"
    ).fetchone()
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    meta = snapshot_meta_frame(snapshot_id, f"run-{snapshot_id}", now, lo, hi, copied, missing)
    checks = pl.DataFrame(
        [
            {
                "asset_key": t.EVENTS,
                "check_name": "events_schema",
                "status": "passed",
                "passed": True,
                "severity": "ERROR",
                "blocking": True,
                "description": "sample check result",
                "evaluated_at": now,
                "run_id": f"run-{snapshot_id}",
            }
        ],
        schema=CHECK_RESULTS_SCHEMA,
    )
    extra = {t.SNAPSHOT_META: meta, t.CHECK_RESULTS: checks}
    if not_refreshed is not None:
        stale = not_refreshed
        extra[TABLE_STATUS] = pl.DataFrame(
            [
                {
                    "table_name": name,
                    "refreshed": name not in stale,
                    "reason": stale.get(name),
                    "materialized_at": now,
                }
                for name in copied
            ],
            schema=TABLE_STATUS_SCHEMA,
        )
    return publish_snapshot(con, copied, snapshot_dir, snapshot_id, keep=keep, extra=extra)
