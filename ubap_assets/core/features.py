"""Per-user behaviour features and labels at a cutoff, computed in DuckDB over ``events``.

Dagster-free. Every query takes the cutoff as a bound parameter and reads only events with
``cutoff - lookback <= event_ts < cutoff`` for features and ``cutoff <= event_ts < cutoff +
horizon`` for labels, so a feature can never see the period its label comes from.

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
from datetime import datetime, timedelta

import duckdb
import polars as pl

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
    "recency_days": "days from the last event to the cutoff (= lookback if none)",
    "active_days": "distinct days with at least one event",
    "sessions": "sessions with an event in the window",
    "sessions_last_7d": "sessions in the 7 days before the cutoff",
    "events": "events of any type",
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
# page view or a scroll) as in core/trends/sessions.py; core.metrics.SESSION_BOUNCE in words.
ENGAGED_EVENTS_SQL = "count(*) FILTER (WHERE event_type NOT IN ('page_view', 'scroll'))"
SESSION_IS_BOUNCE = "page_views = 1 AND engaged_events = 0"

_FEATURES_SQL = """
WITH win AS (
    SELECT e.user_id, e.session_id, e.event_ts, e.event_type, e.revenue, p.page_type
    FROM {events} AS e LEFT JOIN {pages} AS p ON p.page_id = e.page_id
    WHERE e.event_ts >= $start AND e.event_ts < $cutoff
),
sess AS (
    SELECT user_id, session_id, min(event_ts) AS s_start, max(event_ts) AS s_end,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           {engaged} AS engaged_events
    FROM win GROUP BY user_id, session_id
),
su AS (
    SELECT user_id,
           count(*) AS sessions,
           count(*) FILTER (WHERE s_start >= $last7) AS sessions_last_7d,
           avg(epoch(s_end) - epoch(s_start)) / 60.0 AS avg_session_minutes,
           avg(CASE WHEN {is_bounce} THEN 1.0 ELSE 0.0 END) AS bounce_rate
    FROM sess GROUP BY user_id
),
eu AS (
    SELECT user_id,
           count(*) AS events,
           count(DISTINCT CAST(event_ts AS DATE)) AS active_days,
           max(event_ts) AS last_ts,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           count(*) FILTER (WHERE event_type = 'page_view' AND page_type = 'product') AS pv_product,
           count(*) FILTER (WHERE event_type = 'page_view' AND page_type = 'blog') AS pv_blog,
           count(*) FILTER (WHERE event_type = 'page_view' AND page_type = 'help') AS pv_help,
           count(*) FILTER (WHERE event_type = 'search') AS searches,
           count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_cart,
           count(*) FILTER (WHERE event_type = 'checkout_start') AS checkout_starts,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           coalesce(sum(revenue) FILTER (WHERE event_type = 'purchase'), 0.0) AS revenue
    FROM win GROUP BY user_id
),
base AS (
    SELECT user_id FROM {users} WHERE signup_date < CAST($cutoff AS DATE)
    UNION
    SELECT user_id FROM eu
)
SELECT
    b.user_id,
    CAST($cutoff AS TIMESTAMP) AS cutoff,
    CAST($lookback AS INTEGER) AS lookback_days,
    CAST(coalesce((epoch($cutoff) - epoch(eu.last_ts)) / 86400.0, $lookback) AS DOUBLE)
        AS recency_days,
    coalesce(eu.active_days, 0) AS active_days,
    coalesce(su.sessions, 0) AS sessions,
    coalesce(su.sessions_last_7d, 0) AS sessions_last_7d,
    coalesce(eu.events, 0) AS events,
    coalesce(eu.page_views, 0) AS page_views,
    CAST(coalesce(eu.page_views / nullif(su.sessions, 0), 0) AS DOUBLE) AS pages_per_session,
    CAST(coalesce(su.avg_session_minutes, 0) AS DOUBLE) AS avg_session_minutes,
    CAST(coalesce(su.bounce_rate, 0) AS DOUBLE) AS bounce_rate,
    CAST(coalesce(eu.pv_product / nullif(eu.page_views, 0), 0) AS DOUBLE) AS product_share,
    CAST(coalesce(eu.pv_blog / nullif(eu.page_views, 0), 0) AS DOUBLE) AS blog_share,
    CAST(coalesce(eu.pv_help / nullif(eu.page_views, 0), 0) AS DOUBLE) AS help_share,
    coalesce(eu.searches, 0) AS searches,
    coalesce(eu.add_to_cart, 0) AS add_to_cart,
    CAST(coalesce(eu.add_to_cart / nullif(su.sessions, 0), 0) AS DOUBLE) AS add_to_cart_rate,
    coalesce(eu.checkout_starts, 0) AS checkout_starts,
    coalesce(eu.purchases, 0) AS purchases,
    CAST(coalesce(eu.purchases / nullif(su.sessions, 0), 0) AS DOUBLE) AS purchase_rate,
    CAST(coalesce(eu.revenue, 0) AS DOUBLE) AS revenue,
    CAST(greatest(coalesce(date_diff('day', u.signup_date, CAST($cutoff AS DATE)), 0), 0)
        AS DOUBLE) AS days_since_signup,
    coalesce(u.device, 'unknown') AS device,
    coalesce(u.traffic_source, 'unknown') AS traffic_source
FROM base AS b
LEFT JOIN eu ON eu.user_id = b.user_id
LEFT JOIN su ON su.user_id = b.user_id
LEFT JOIN {users} AS u ON u.user_id = b.user_id
ORDER BY b.user_id
"""

_CONVERSION_SQL = """
SELECT user_id, count(*) AS future_purchases
FROM {events}
WHERE event_type = 'purchase' AND event_ts >= $cutoff AND event_ts < $label_end
GROUP BY user_id
"""

# The first session that *starts* in [cutoff, label_end): sessions that began before the
# cutoff (and so are partly inside the features) are not "next" sessions.
_BOUNCE_SQL = """
WITH started_before AS (
    SELECT DISTINCT session_id FROM {events}
    WHERE event_ts >= $cutoff - INTERVAL 1 DAY AND event_ts < $cutoff
),
sess AS (
    SELECT user_id, session_id, min(event_ts) AS s_start,
           count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
           {engaged} AS engaged_events
    FROM {events}
    WHERE event_ts >= $cutoff AND event_ts < $label_end
      AND session_id NOT IN (SELECT session_id FROM started_before)
    GROUP BY user_id, session_id
)
SELECT user_id, arg_min({is_bounce}, s_start) AS next_session_bounced
FROM sess GROUP BY user_id
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
    def horizon_note(self) -> str:
        """Why the horizon differs from the default, or ''."""
        if self.requested_horizon_days or self.horizon_days == DEFAULT_HORIZON_DAYS:
            return ""
        days = (self.end - self.first_day).days
        return (
            f"horizon shortened from {DEFAULT_HORIZON_DAYS} to {self.horizon_days} days: "
            f"{days} days of events cannot hold three {DEFAULT_HORIZON_DAYS}-day label windows "
            f"and {MIN_LOOKBACK_DAYS} days of history"
        )

    def as_dict(self) -> dict[str, str | int]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def conversion_label_name(horizon_days: int) -> str:
    """The user-level conversion label in words (not the per-session conversion rate)."""
    return f"purchase within {horizon_days} days"


def bounce_label_name(horizon_days: int) -> str:
    return f"next session within {horizon_days} days bounces"


def _sql(template: str, events: str, users: str = "users", pages: str = "pages") -> str:
    for name in (events, users, pages):
        if not _IDENT.match(name):
            raise ValueError(f"not a table name: {name!r}")
    return template.format(
        events=events,
        users=users,
        pages=pages,
        engaged=ENGAGED_EVENTS_SQL,
        is_bounce=SESSION_IS_BOUNCE,
    )


def event_span(con: duckdb.DuckDBPyConnection, events: str = "events") -> tuple[datetime, datetime]:
    """Midnight of the first day with events and midnight after the last one."""
    lo, hi = con.execute(
        _sql(
            "SELECT CAST(min(event_ts) AS DATE), CAST(max(event_ts) AS DATE) FROM {events}", events
        )
    ).fetchone()
    if lo is None:
        raise FeatureWindowError(
            "the events table is empty: materialize `events` (or drop files into the inbox) first"
        )
    first = datetime(lo.year, lo.month, lo.day)
    end = datetime(hi.year, hi.month, hi.day) + timedelta(days=1)
    return first, end


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
    events: str = "events",
    users: str = "users",
    pages: str = "pages",
) -> pl.DataFrame:
    """One row per user known before ``cutoff``; reads only events in the lookback window."""
    params = {
        "cutoff": cutoff,
        "start": cutoff - timedelta(days=lookback_days),
        "last7": cutoff - timedelta(days=7),
        "lookback": lookback_days,
    }
    frame = con.execute(_sql(_FEATURES_SQL, events, users, pages), params).pl()
    if frame.filter(pl.col("events") > 0).is_empty():
        raise FeatureWindowError(
            f"empty window: no events in [{params['start']:%Y-%m-%d}, {cutoff:%Y-%m-%d}); "
            "check the events table covers the lookback window before the cutoff"
        )
    return frame


def _label_window(
    con: duckdb.DuckDBPyConnection, sql: str, events: str, cutoff: datetime, horizon_days: int
) -> pl.DataFrame:
    """A label query over ``[cutoff, cutoff + horizon)`` only: never the features' window."""
    label_end = cutoff + timedelta(days=horizon_days)
    return con.execute(_sql(sql, events), {"cutoff": cutoff, "label_end": label_end}).pl()


def conversion_labels(
    con: duckdb.DuckDBPyConnection,
    features: pl.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    events: str = "events",
) -> pl.DataFrame:
    """``features`` plus ``label``: the user purchases in ``[cutoff, cutoff + horizon)``."""
    future = _label_window(con, _CONVERSION_SQL, events, cutoff, horizon_days)
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
    events: str = "events",
) -> pl.DataFrame:
    """Users with a session starting in the horizon, plus ``label``: that session bounced."""
    next_sessions = _label_window(con, _BOUNCE_SQL, events, cutoff, horizon_days)
    return features.join(next_sessions, on="user_id", how="inner", maintain_order="left").rename(
        {"next_session_bounced": "label"}
    )


def future_events_guard(
    con: duckdb.DuckDBPyConnection,
    cutoff: datetime,
    lookback_days: int,
    events: str = "events",
    compute: Callable[..., pl.DataFrame] | None = None,
) -> int:
    """Rows that differ between features over all events and over events before ``cutoff``.

    Every event at or after the cutoff is a "planted future event": if the feature SQL read
    any of them, the two frames differ. 0 means the features ignore the future. ``compute``
    (default ``compute_features``) is the feature function under test.
    """
    compute = compute or compute_features
    if not _IDENT.match(events):
        raise ValueError(f"not a table name: {events!r}")
    # Only the lookback window is copied (a day of margin), never the whole table.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE ubap_events_before_cutoff AS "
        f"SELECT * FROM {events} WHERE event_ts >= $start AND event_ts < $cutoff",
        {"cutoff": cutoff, "start": cutoff - timedelta(days=lookback_days + 1)},
    )
    try:
        full = compute(con, cutoff, lookback_days, events=events)
        past = compute(con, cutoff, lookback_days, events="ubap_events_before_cutoff")
    finally:
        con.execute("DROP TABLE IF EXISTS ubap_events_before_cutoff")
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


def label_window_guard(
    con: duckdb.DuckDBPyConnection,
    features: pl.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    labeller: Callable[..., pl.DataFrame],
    events: str = "events",
    lookbehind_days: int = 0,
) -> int:
    """Users whose label changes when every event outside the label window is removed.

    The copy keeps ``[cutoff - lookbehind_days, cutoff + horizon)``: the label window, and for
    the bounce label the day before it, which only tells a session that started before the
    cutoff. 0 means the label reads only its own window (nothing before the cutoff counts as
    a label event, nothing after the window either).
    """
    if not _IDENT.match(events):
        raise ValueError(f"not a table name: {events!r}")
    label_end = cutoff + timedelta(days=horizon_days)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE ubap_events_in_label_window AS "
        f"SELECT * FROM {events} WHERE event_ts >= $start AND event_ts < $label_end",
        {"start": cutoff - timedelta(days=lookbehind_days), "label_end": label_end},
    )
    try:
        full = labeller(con, features, cutoff, horizon_days, events=events)
        window = labeller(con, features, cutoff, horizon_days, events="ubap_events_in_label_window")
    finally:
        con.execute("DROP TABLE IF EXISTS ubap_events_in_label_window")
    joined = full.select("user_id", "label").join(
        window.select("user_id", "label"), on="user_id", how="full", suffix="_window"
    )
    return joined.filter(pl.col("label").ne_missing(pl.col("label_window"))).height
