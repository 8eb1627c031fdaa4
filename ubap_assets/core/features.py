"""Per-user behaviour features and labels at a cutoff, computed in DuckDB from the daily aggregates.

Dagster-free. Features read ``user_daily`` (one row per user and day with a session starting
that day) for the days ``cutoff - lookback <= day < cutoff``, and ``users``; never ``events``.
**A session and all its events count on the session's start day** (UTC): a session that starts
at 23:50 and ends after midnight counts wholly on its first day, before a cutoff at that
midnight, and never in the labels after it. Cutoffs are midnights.

Labels read the window after the cutoff, by the same rule: conversion from ``user_daily``
purchases on the days ``cutoff <= day < cutoff + horizon``; the next-session bounce from the
first session (``sessions``) that *starts* in that window. So a feature can never see the
period its label comes from, and no session is counted on both sides of a cutoff.

A *bounce* session is the trends' session bounce (``core.metrics.SESSION_BOUNCE``): exactly
one page view and no engaged event (a scroll is not engagement), the same expression as
``sessions.is_bounce`` (:data:`SESSION_IS_BOUNCE`).

Three cutoffs split time into disjoint label windows (:func:`plan_windows`): the models are fit
on the labels after the training cutoff, chosen on the validation window, and reported on the
test window, the latest one.
"""

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta

import duckdb
import polars as pl

from ubap_assets.core.daily import exact_sum

NUMERIC_FEATURES: tuple[str, ...] = (
    "recency_days",
    "active_days",
    "sessions",
    "sessions_last_7d",
    "events",
    "page_views",
    "pages_per_session",
    "avg_session_minutes",
    "bounce_rate",
    "product_share",
    "blog_share",
    "help_share",
    "searches",
    "add_to_cart",
    "add_to_cart_rate",
    "checkout_starts",
    "purchases",
    "purchase_rate",
    "revenue",
    "days_since_signup",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("device", "traffic_source")
# The one feature list the segmentation clusters on and the user map projects (both log1p,
# standardised): how much, and mostly *how*, people use the site. Rates rather than counts, so
# a persona is not split by how active its members happen to be.
SEGMENT_FEATURES: tuple[str, ...] = (
    "sessions",
    "pages_per_session",
    "avg_session_minutes",
    "bounce_rate",
    "product_share",
    "blog_share",
    "help_share",
    "add_to_cart_rate",
    "purchase_rate",
)
# Segment means published in segment_profiles (original units).
PROFILE_FEATURES: tuple[str, ...] = (
    "sessions",
    "active_days",
    "pages_per_session",
    "avg_session_minutes",
    "bounce_rate",
    "product_share",
    "blog_share",
    "help_share",
    "add_to_cart_rate",
    "purchases",
    "revenue",
    "recency_days",
)

# name -> meaning, shown in the Dagster UI and used to phrase prediction reasons.
FEATURE_DICTIONARY: dict[str, str] = {
    "recency_days": "days from the end of the last session started in the window to the "
    "cutoff, never below 0 (= lookback if none)",
    "active_days": "distinct days on which a session started",
    "sessions": "sessions started in the window",
    "sessions_last_7d": "sessions started in the 7 days before the cutoff",
    "events": "events of any type (of the sessions started in the window)",
    "page_views": "page views",
    "pages_per_session": "page views per session",
    "avg_session_minutes": "mean minutes from a session's first to its last event",
    "bounce_rate": "share of sessions that bounced: one page view and no engaged event "
    "(a scroll is not engagement)",
    "product_share": "share of page views on product pages",
    "blog_share": "share of page views on blog pages",
    "help_share": "share of page views on help pages",
    "searches": "search events",
    "add_to_cart": "add-to-cart events",
    "add_to_cart_rate": "add-to-cart events per session",
    "checkout_starts": "checkouts started",
    "purchases": "purchases",
    "purchase_rate": "purchases per session",
    "revenue": "revenue of purchases",
    "days_since_signup": "days from signup to the cutoff",
    "device": "the user's usual device (users table)",
    "traffic_source": "the user's acquisition channel (users table)",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# One bounce: the session columns ``page_views`` and ``engaged_events`` (events other than a
# page view or a scroll), as in ``sessions.is_bounce``; core.metrics.SESSION_BOUNCE.
SESSION_IS_BOUNCE = "page_views = 1 AND engaged_events = 0"

# Sums of BIGINT columns are cast back to BIGINT (DuckDB widens them to HUGEINT); sums of
# doubles are exact (core.daily.exact_sum), whatever the order DuckDB's threads add them in.
_FEATURES_SQL = """
WITH ud AS (
    SELECT user_id,
           count(DISTINCT day) AS active_days,
           CAST(sum(sessions) AS BIGINT) AS sessions,
           CAST(coalesce(sum(sessions) FILTER (WHERE day >= $last7), 0) AS BIGINT)
               AS sessions_last_7d,
           CAST(sum(events) AS BIGINT) AS events,
           CAST(sum(page_views) AS BIGINT) AS page_views,
           CAST(sum(bounces) AS BIGINT) AS bounces,
           {session_seconds} AS session_seconds,
           CAST(sum(product_views) AS BIGINT) AS pv_product,
           CAST(sum(blog_views) AS BIGINT) AS pv_blog,
           CAST(sum(help_views) AS BIGINT) AS pv_help,
           CAST(sum(searches) AS BIGINT) AS searches,
           CAST(sum(add_to_cart) AS BIGINT) AS add_to_cart,
           CAST(sum(checkout_starts) AS BIGINT) AS checkout_starts,
           CAST(sum(purchases) AS BIGINT) AS purchases,
           {revenue} AS revenue,
           max(last_event_ts) AS last_ts
    FROM {user_daily}
    WHERE day >= $start AND day < $cutoff_day
    GROUP BY user_id
),
base AS (
    SELECT user_id FROM {users} WHERE signup_date < $cutoff_day
    UNION
    SELECT user_id FROM ud
)
SELECT
    b.user_id,
    CAST($cutoff AS TIMESTAMP) AS cutoff,
    CAST($lookback AS INTEGER) AS lookback_days,
    -- greatest() skips a null: the fallback comes first, the clamp after
    CAST(greatest(coalesce((epoch($cutoff) - epoch(ud.last_ts)) / 86400.0, $lookback), 0.0)
        AS DOUBLE) AS recency_days,
    coalesce(ud.active_days, 0) AS active_days,
    coalesce(ud.sessions, 0) AS sessions,
    coalesce(ud.sessions_last_7d, 0) AS sessions_last_7d,
    coalesce(ud.events, 0) AS events,
    coalesce(ud.page_views, 0) AS page_views,
    CAST(coalesce(ud.page_views / nullif(ud.sessions, 0), 0) AS DOUBLE) AS pages_per_session,
    CAST(coalesce(ud.session_seconds / nullif(ud.sessions, 0) / 60.0, 0) AS DOUBLE)
        AS avg_session_minutes,
    CAST(coalesce(ud.bounces / nullif(ud.sessions, 0), 0) AS DOUBLE) AS bounce_rate,
    CAST(coalesce(ud.pv_product / nullif(ud.page_views, 0), 0) AS DOUBLE) AS product_share,
    CAST(coalesce(ud.pv_blog / nullif(ud.page_views, 0), 0) AS DOUBLE) AS blog_share,
    CAST(coalesce(ud.pv_help / nullif(ud.page_views, 0), 0) AS DOUBLE) AS help_share,
    coalesce(ud.searches, 0) AS searches,
    coalesce(ud.add_to_cart, 0) AS add_to_cart,
    CAST(coalesce(ud.add_to_cart / nullif(ud.sessions, 0), 0) AS DOUBLE) AS add_to_cart_rate,
    coalesce(ud.checkout_starts, 0) AS checkout_starts,
    coalesce(ud.purchases, 0) AS purchases,
    CAST(coalesce(ud.purchases / nullif(ud.sessions, 0), 0) AS DOUBLE) AS purchase_rate,
    coalesce(ud.revenue, 0.0) AS revenue,
    CAST(greatest(coalesce(date_diff('day', u.signup_date, $cutoff_day), 0), 0)
        AS DOUBLE) AS days_since_signup,
    coalesce(u.device, 'unknown') AS device,
    coalesce(u.traffic_source, 'unknown') AS traffic_source
FROM base AS b
LEFT JOIN ud ON ud.user_id = b.user_id
LEFT JOIN {users} AS u ON u.user_id = b.user_id
ORDER BY b.user_id
""".replace("{session_seconds}", exact_sum("session_seconds")).replace(
    "{revenue}", exact_sum("revenue")
)

# Purchases of the sessions that start in [cutoff, label_end) (by their start day).
_CONVERSION_SQL = """
SELECT user_id, CAST(sum(purchases) AS BIGINT) AS future_purchases
FROM {user_daily}
WHERE day >= $cutoff_day AND day < $label_end_day AND purchases > 0
GROUP BY user_id
"""

# The first session that *starts* in [cutoff, label_end): a session that began before the
# cutoff belongs to the features (its start day), never to a label. Ties on the start
# instant are broken by session id, so the label is deterministic.
_BOUNCE_SQL = """
SELECT user_id, is_bounce AS next_session_bounced
FROM {sessions}
WHERE day >= $cutoff_day AND day < $label_end_day
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY session_start, session_id) = 1
"""


class FeatureWindowError(ValueError):
    """The events cannot support the requested windows (empty, or too short)."""


DEFAULT_HORIZON_DAYS = 14
MIN_HORIZON_DAYS = 7
MIN_LOOKBACK_DAYS = 7
SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class TimePlan:
    """The cutoffs of one run and their disjoint label windows, in time order:
    train ``[train_cutoff, valid_cutoff)``, validation ``[valid_cutoff, test_cutoff)``,
    test ``[test_cutoff, end)``; each is ``horizon_days`` long."""

    first_day: datetime  # midnight of the first day with events
    end: datetime  # midnight after the last day with events (exclusive)
    train_cutoff: datetime
    valid_cutoff: datetime
    test_cutoff: datetime
    horizon_days: int
    lookback_days: int
    requested_horizon_days: int = 0  # 0: the default horizon, shortened to fit the history
    # The training cadence: ``end`` is a training boundary (core/cadence.py) and the next one
    # is ``retrain_every_days`` later; 0: not on a cadence (``end`` is the data end).
    retrain_every_days: int = 0

    def cutoff(self, split: str) -> datetime:
        """The cutoff whose label window is ``split`` ('train', 'validation' or 'test')."""
        cutoffs = dict(
            zip(SPLITS, (self.train_cutoff, self.valid_cutoff, self.test_cutoff), strict=True)
        )
        if split not in cutoffs:
            raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        return cutoffs[split]

    def label_window(self, split: str) -> tuple[datetime, datetime]:
        """``[start, end)`` of the labels of ``split``."""
        start = self.cutoff(split)
        return start, start + timedelta(days=self.horizon_days)

    @property
    def next_training_end(self) -> datetime | None:
        """The boundary the next training period ends its data at (None off a cadence)."""
        if self.retrain_every_days <= 0:
            return None
        return self.end + timedelta(days=self.retrain_every_days)

    @property
    def horizon_note(self) -> str:
        """Why the horizon differs from the default, or ''."""
        if self.requested_horizon_days or self.horizon_days == DEFAULT_HORIZON_DAYS:
            return ""
        days = (self.end - self.first_day).days
        return (
            f"horizon shortened from {DEFAULT_HORIZON_DAYS} to {self.horizon_days} days: "
            f"{days} days of data up to {self.end:%Y-%m-%d} cannot hold three "
            f"{DEFAULT_HORIZON_DAYS}-day label windows and {MIN_LOOKBACK_DAYS} days of history"
        )

    def as_dict(self) -> dict[str, str | int]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def conversion_label_name(horizon_days: int) -> str:
    """The user-level conversion label in words (not the per-session conversion rate)."""
    return f"purchase within {horizon_days} days"


def bounce_label_name(horizon_days: int) -> str:
    return f"next session within {horizon_days} days bounces"


def _sql(template: str, **tables: str) -> str:
    for name in tables.values():
        if not _IDENT.match(name):
            raise ValueError(f"not a table name: {name!r}")
    return template.format(**tables)


def _midnight(moment: datetime, what: str) -> date:
    """The day starting at ``moment``; a cutoff must be a midnight (features count whole days)."""
    if moment.time() != time(0):
        raise ValueError(
            f"{what} {moment.isoformat()} is not a midnight: features and labels count whole "
            "days of user_daily; pass the midnight that starts a day"
        )
    return moment.date()


def _require(con: duckdb.DuckDBPyConnection, table: str) -> None:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary "
        "UNION ALL SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary "
        "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
        [table, table, table],
    ).fetchall()
    if not any(n for (n,) in exists):
        raise FeatureWindowError(
            f"table {table!r} does not exist: materialize sessions and user_daily "
            "(ubap_assets.core.daily; build_all_daily for a whole warehouse) first"
        )


def event_span(con: duckdb.DuckDBPyConnection, events: str = "events") -> tuple[datetime, datetime]:
    """Midnight of the first day with events and midnight after the last one (scans
    ``events``; the assets use :func:`daily_span`)."""
    lo, hi = con.execute(
        _sql(
            "SELECT CAST(min(event_ts) AS DATE), CAST(max(event_ts) AS DATE) FROM {events}",
            events=events,
        )
    ).fetchone()
    if lo is None:
        raise FeatureWindowError(
            "the events table is empty: materialize `events` (or drop files into the inbox) first"
        )
    first = datetime(lo.year, lo.month, lo.day)
    end = datetime(hi.year, hi.month, hi.day) + timedelta(days=1)
    return first, end


def daily_span(
    con: duckdb.DuckDBPyConnection, user_daily: str = "user_daily"
) -> tuple[datetime, datetime]:
    """Midnight of the first day a session started and midnight after the last one: the data
    span as the daily aggregates see it (reads ``user_daily``, a small table, never events)."""
    _require(con, user_daily)
    lo, hi = con.execute(
        _sql("SELECT min(day), max(day) FROM {user_daily}", user_daily=user_daily)
    ).fetchone()
    if lo is None:
        raise FeatureWindowError(
            f"{user_daily} is empty: materialize `events`, then sessions and user_daily, first"
        )
    return datetime.combine(lo, time(0)), datetime.combine(hi, time(0)) + timedelta(days=1)


def plan_windows(
    first_day: datetime,
    end: datetime,
    horizon_days: int = 0,
    lookback_days: int = 0,
    min_lookback_days: int = MIN_LOOKBACK_DAYS,
) -> TimePlan:
    """Place three cutoffs at the end of the history, one horizon apart, so the train,
    validation and test label windows are disjoint and in time order; the lookback is what
    exists before the training cutoff (capped at ``lookback_days`` when that is > 0).

    ``horizon_days`` 0 means the default (14 days), shortened (down to 7) when the history
    cannot hold three such windows plus ``min_lookback_days``; a positive value is used as
    given or fails. The same lookback is used at every cutoff so features mean the same at
    train, validation, test and scoring time.
    """
    if horizon_days < 0:
        raise FeatureWindowError(
            f"horizon_days must be >= 1, or 0 for the default (got {horizon_days})"
        )
    span = (end - first_day).days
    horizon = horizon_days
    if horizon == 0:
        fits = (span - min_lookback_days) // len(SPLITS)
        horizon = max(MIN_HORIZON_DAYS, min(DEFAULT_HORIZON_DAYS, fits))
    test_cutoff = end - timedelta(days=horizon)
    valid_cutoff = test_cutoff - timedelta(days=horizon)
    train_cutoff = valid_cutoff - timedelta(days=horizon)
    available = (train_cutoff - first_day).days
    lookback = available if lookback_days <= 0 else min(lookback_days, available)
    if lookback < min_lookback_days:
        raise FeatureWindowError(
            f"empty window: {span} days of events leave {max(available, 0)} days of history "
            f"before the training cutoff {train_cutoff:%Y-%m-%d}, fewer than the "
            f"{min_lookback_days} needed (3 label windows of horizon {horizon} days + lookback); "
            "load more days of events or lower horizon_days"
        )
    return TimePlan(
        first_day, end, train_cutoff, valid_cutoff, test_cutoff, horizon, lookback, horizon_days
    )


def compute_features(
    con: duckdb.DuckDBPyConnection,
    cutoff: datetime,
    lookback_days: int,
    user_daily: str = "user_daily",
    users: str = "users",
) -> pl.DataFrame:
    """One row per user known before ``cutoff`` (a midnight); reads only the ``user_daily``
    days in ``[cutoff - lookback, cutoff)``: the sessions that started then, with all their
    events (see the module docstring)."""
    cutoff_day = _midnight(cutoff, "cutoff")
    _require(con, user_daily)
    params = {
        "cutoff": cutoff,
        "cutoff_day": cutoff_day,
        "start": cutoff_day - timedelta(days=lookback_days),
        "last7": cutoff_day - timedelta(days=7),
        "lookback": lookback_days,
    }
    sql = _sql(_FEATURES_SQL, user_daily=user_daily, users=users)
    frame = con.execute(sql, params).pl()
    if frame.filter(pl.col("sessions") > 0).is_empty():
        raise FeatureWindowError(
            f"empty window: no session started in [{params['start']:%Y-%m-%d}, "
            f"{cutoff:%Y-%m-%d}); check that {user_daily} covers the lookback window before "
            "the cutoff"
        )
    return frame


def _label_window(
    con: duckdb.DuckDBPyConnection, sql: str, cutoff: datetime, horizon_days: int, **tables: str
) -> pl.DataFrame:
    """A label query over the days ``[cutoff, cutoff + horizon)`` only: never the features'."""
    cutoff_day = _midnight(cutoff, "cutoff")
    for table in tables.values():
        _require(con, table)
    params = {"cutoff_day": cutoff_day, "label_end_day": cutoff_day + timedelta(days=horizon_days)}
    return con.execute(_sql(sql, **tables), params).pl()


def conversion_labels(
    con: duckdb.DuckDBPyConnection,
    features: pl.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    user_daily: str = "user_daily",
    sessions: str = "sessions",
) -> pl.DataFrame:
    """``features`` plus ``label``: a session starting in ``[cutoff, cutoff + horizon)`` has a
    purchase (``sessions`` is unused: every labeller takes the same tables)."""
    future = _label_window(con, _CONVERSION_SQL, cutoff, horizon_days, user_daily=user_daily)
    return (
        features.join(future, on="user_id", how="left", maintain_order="left")
        .with_columns(label=pl.col("future_purchases").fill_null(0) > 0)
        .drop("future_purchases")
    )


def bounce_labels(
    con: duckdb.DuckDBPyConnection,
    features: pl.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    user_daily: str = "user_daily",
    sessions: str = "sessions",
) -> pl.DataFrame:
    """Users with a session starting in the horizon, plus ``label``: the first such session
    bounced (``user_daily`` is unused: every labeller takes the same tables)."""
    next_sessions = _label_window(con, _BOUNCE_SQL, cutoff, horizon_days, sessions=sessions)
    return features.join(next_sessions, on="user_id", how="inner", maintain_order="left").rename(
        {"next_session_bounced": "label"}
    )


def _copy_days(
    con: duckdb.DuckDBPyConnection, source: str, target: str, start: date, end: date
) -> None:
    """A temporary copy of the rows of ``source`` with ``start <= day < end``."""
    con.execute(
        _sql(
            "CREATE OR REPLACE TEMP TABLE {target} AS "
            "SELECT * FROM {source} WHERE day >= $start AND day < $end",
            target=target,
            source=source,
        ),
        {"start": start, "end": end},
    )


def _differing_rows(full: pl.DataFrame, past: pl.DataFrame) -> int:
    """Users whose row differs between two feature frames (floats to 1e-9, relative)."""
    if full.height != past.height:
        return abs(full.height - past.height) or 1
    joined = full.join(past, on="user_id", how="full", suffix="_past")
    # Floats are compared to 1e-9 (relative): parallel sums may add in another order.
    differ = pl.any_horizontal(
        (pl.col(c) - pl.col(f"{c}_past")).abs().fill_null(1.0)
        > 1e-9 * pl.max_horizontal(pl.col(c).abs(), pl.lit(1.0))
        if d.is_float()
        else pl.col(c).ne_missing(pl.col(f"{c}_past"))
        for c, d in full.schema.items()
        if c != "user_id"
    )
    return joined.filter(differ).height


def future_events_guard(
    con: duckdb.DuckDBPyConnection,
    cutoff: datetime,
    lookback_days: int,
    user_daily: str = "user_daily",
    compute: Callable[..., pl.DataFrame] | None = None,
) -> int:
    """Rows that differ between features over all of ``user_daily`` and over its days before
    ``cutoff`` only.

    Every day at or after the cutoff is "planted future activity": if the feature SQL read
    any of it, the two frames differ. 0 means the features ignore the future. ``compute``
    (default ``compute_features``) is the feature function under test.
    """
    compute = compute or compute_features
    cutoff_day = _midnight(cutoff, "cutoff")
    _require(con, user_daily)
    # Only the lookback window is copied (a day of margin), never the whole table.
    past_table = "ubap_user_daily_before_cutoff"
    _copy_days(
        con, user_daily, past_table, cutoff_day - timedelta(days=lookback_days + 1), cutoff_day
    )
    try:
        full = compute(con, cutoff, lookback_days, user_daily=user_daily)
        past = compute(con, cutoff, lookback_days, user_daily=past_table)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {past_table}")
    return _differing_rows(full, past)


def label_window_guard(
    con: duckdb.DuckDBPyConnection,
    features: pl.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    labeller: Callable[..., pl.DataFrame],
    user_daily: str = "user_daily",
    sessions: str = "sessions",
) -> int:
    """Users whose label changes when every day outside the label window is removed from
    ``user_daily`` and ``sessions``.

    The copies keep the days ``[cutoff, cutoff + horizon)``. 0 means the label reads only its
    own window (no session that started before the cutoff, none after the window).
    """
    cutoff_day = _midnight(cutoff, "cutoff")
    label_end = cutoff_day + timedelta(days=horizon_days)
    copies = {"user_daily": "ubap_user_daily_in_window", "sessions": "ubap_sessions_in_window"}
    for source, target in ((user_daily, copies["user_daily"]), (sessions, copies["sessions"])):
        _require(con, source)
        _copy_days(con, source, target, cutoff_day, label_end)
    try:
        full = labeller(
            con, features, cutoff, horizon_days, user_daily=user_daily, sessions=sessions
        )
        window = labeller(con, features, cutoff, horizon_days, **copies)
    finally:
        for target in copies.values():
            con.execute(f"DROP TABLE IF EXISTS {target}")
    joined = full.select("user_id", "label").join(
        window.select("user_id", "label"), on="user_id", how="full", suffix="_window"
    )
    return joined.filter(pl.col("label").ne_missing(pl.col("label_window"))).height
