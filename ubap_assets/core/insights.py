"""Actionable site-optimization insights for the admin (Dagster-free).

Four kinds, each with its numbers and a suggested action:
- ``high_exit_page`` / ``high_bounce_page``: top-quartile-traffic pages whose exit (or bounce)
  rate is well above the site median.
- ``funnel_dropoff``: a funnel step (session reached A -> also reached B) that converts far
  worse than usual, either for a device/traffic source or on a recent day.
- ``never_recommended``: candidate pages that no user's recommendation list contains.
- ``content_island``: pages with no close semantic neighbour (or no text at all).

Each finding's ``suggested_action`` is written from its own numbers (what matching the
baseline would be worth, the page's type, the channel or the day), so no two findings with
different figures share the same advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from ubap_assets.warehouse import tables

SCHEMA: dict[str, pl.DataType] = {
    "insight_id": pl.String,
    "kind": pl.String,
    "severity": pl.String,
    "subject": pl.String,
    "subject_title": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "baseline": pl.Float64,
    "volume": pl.Int64,
    "details": pl.String,
    "suggested_action": pl.String,
    "as_of": pl.Date,
}
FUNNEL: tuple[tuple[str, str], ...] = (
    ("session", "any event"),
    ("product_view", "viewed a product"),
    ("add_to_cart", "added to cart"),
    ("checkout_start", "started checkout"),
    ("purchase", "purchased"),
)
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class InsightParams:
    window_days: int = 28  # page and funnel statistics use the last N days
    min_page_views: int = 50  # pages with fewer views are not judged
    rate_ratio: float = 1.25  # flag exit/bounce rates at least this many times the median
    funnel_min_sessions: int = 200  # smallest step volume judged for a device/source
    funnel_min_day_sessions: int = 10  # smallest step volume judged for a single day
    funnel_gap: float = 0.25  # flag a segment converting this much (relative) below overall
    funnel_z: float = 3.5  # flag a day whose step conversion is this many robust SDs low
    recent_days: int = 28  # days checked for a daily drop
    island_similarity: float = 0.35  # max cosine to any other page below this = island
    max_per_kind: int = 15


# What a page of each type should offer a visitor who would otherwise leave or bounce.
_NEXT_STEP: dict[str, str] = {
    "product": "related products, delivery and returns facts and a visible add-to-cart button",
    "category": "filters, sorting and product tiles that show price and stock",
    "blog": "links to the products the article talks about and a next article",
    "help": "a link back to the product or the checkout, and a contact option",
    "home": "a prominent search box and links to the best-selling categories",
    "deals": "the deals' products with prices and an add-to-cart button on each",
    "pricing": "a comparison of the plans and a clear call to action",
}
_ANY_PAGE = "links to related pages and one clear call to action"
# Where a lagging funnel step is usually broken.
_STEP_SUSPECTS: dict[str, str] = {
    "session": "the landing pages this traffic arrives on and their links to products",
    "product_view": "the product page's add-to-cart button, variant pickers and stock messages",
    "add_to_cart": "the cart page, its totals and the checkout button",
    "checkout_start": "the payment form, its validation errors and the payment provider",
}


def _severity(ratio: float, high: float, medium: float) -> str:
    return "high" if ratio >= high else "medium" if ratio >= medium else "low"


def _frame(rows: list[dict], as_of: date) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=SCHEMA)
    return (
        pl.DataFrame(rows)
        .with_columns(as_of=pl.lit(as_of, dtype=pl.Date))
        .select(list(SCHEMA))
        .cast(SCHEMA)
        .with_columns(pl.col("value", "baseline").fill_nan(0.0).fill_null(0.0).round(4))
    )


# --------------------------------------------------------------------------- pages


def page_exit_stats(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """Per page: views, sessions, exits (last page of a session without purchase), bounces.

    Reads the events of [start, end) only (a bounded window, never the whole history): which
    page a session entered and left by is not in any daily aggregate. One hash aggregation per
    session, then per page; ties in time are broken by event_id.
    """
    return con.execute(
        f"""
        WITH e AS NOT MATERIALIZED (  -- read twice: scanning is cheaper than materializing it
            SELECT session_id, page_id, event_type, event_ts, event_id
            FROM {tables.EVENTS}
            WHERE event_ts >= ? AND event_ts < ? AND session_id IS NOT NULL
              AND page_id IS NOT NULL
        ),
        per_session AS (
            SELECT session_id,
                   arg_min(page_id, (event_ts, event_id)) AS entry_page,
                   arg_min(event_type, (event_ts, event_id)) AS entry_type,
                   arg_max(page_id, (event_ts, event_id)) AS exit_page,
                   count(*) AS n_events,
                   bool_or(event_type = 'purchase') AS bought
            FROM e GROUP BY session_id
        ),
        per_page AS (
            SELECT page_id,
                   count(*) FILTER (WHERE event_type = 'page_view') AS views,
                   count(DISTINCT session_id) AS sessions
            FROM e GROUP BY page_id
        ),
        exits AS (
            SELECT exit_page AS page_id, count(*) FILTER (WHERE NOT bought) AS exits
            FROM per_session GROUP BY 1
        ),
        entries AS (
            SELECT entry_page AS page_id, count(*) AS entries,
                   count(*) FILTER (WHERE n_events = 1 AND entry_type = 'page_view') AS bounces
            FROM per_session GROUP BY 1
        )
        SELECT page_id, views::BIGINT AS views, sessions::BIGINT AS sessions,
               coalesce(exits, 0)::BIGINT AS exits, coalesce(entries, 0)::BIGINT AS entries,
               coalesce(bounces, 0)::BIGINT AS bounces
        FROM per_page LEFT JOIN exits USING (page_id) LEFT JOIN entries USING (page_id)
        """,
        [start, end],
    ).pl()


def page_insights(stats: pl.DataFrame, pages: pl.DataFrame, p: InsightParams) -> list[dict]:
    judged = stats.filter(pl.col("views") >= p.min_page_views).with_columns(
        exit_rate=pl.col("exits") / pl.col("sessions"),
        bounce_rate=pl.when(pl.col("entries") > 0)
        .then(pl.col("bounces") / pl.col("entries"))
        .otherwise(None),
    )
    if judged.height < 4:
        return []
    busy = judged.filter(pl.col("views") >= judged["views"].quantile(0.75))
    titles = dict(
        zip(pages["page_id"].to_list(), pages["title"].fill_null("").to_list(), strict=False)
    )
    # A catalogue without page types (a bare page list) gets the advice for any page.
    page_types = (
        pages["page_type"] if "page_type" in pages.columns else pl.Series([None] * pages.height)
    )
    types = dict(zip(pages["page_id"].to_list(), page_types.fill_null("").to_list(), strict=False))
    rows: list[dict] = []
    for metric, kind, volume_col in (
        ("exit_rate", "high_exit_page", "sessions"),
        ("bounce_rate", "high_bounce_page", "entries"),
    ):
        rates = judged[metric].drop_nulls()
        if rates.is_empty():
            continue
        median = float(rates.median())
        if median <= 0:
            continue
        hits = busy.filter(pl.col(metric) >= p.rate_ratio * median).sort(metric, descending=True)
        for r in hits.head(p.max_per_kind).iter_rows(named=True):
            ratio = r[metric] / median
            label = metric.replace("_", " ")
            title = titles.get(r["page_id"], r["page_id"])
            action = _page_action(
                kind, title, types.get(r["page_id"], ""), r[metric], median, r[volume_col], p
            )
            rows.append(
                {
                    "insight_id": f"{kind}:{r['page_id']}",
                    "kind": kind,
                    "severity": _severity(ratio, 1.6, 1.35),
                    "subject": r["page_id"],
                    "subject_title": title,
                    "metric": metric,
                    "value": r[metric],
                    "baseline": median,
                    "volume": r[volume_col],
                    "details": (
                        f"{label} {r[metric]:.1%} vs site median {median:.1%} ({ratio:.2f}x) on "
                        f"{r['views']:,} views / {r[volume_col]:,} {volume_col} in the window"
                    ),
                    "suggested_action": action,
                }
            )
    return rows


def _page_action(
    kind: str, title: str, page_type: str, rate: float, median: float, volume: int, p: InsightParams
) -> str:
    """Advice for a page that loses visitors, sized by what the site median would keep."""
    kept = round(volume * (rate - median))
    offer = _NEXT_STEP.get(page_type, _ANY_PAGE)
    if kind == "high_exit_page":
        return (
            f"'{title}' ends {rate:.0%} of its {volume:,} sessions against {median:.0%} "
            f"site-wide: at the median about {kept:,} more sessions would have gone on in "
            f"{p.window_days} days. Give it {offer}, and check its load time."
        )
    return (
        f"{rate:.0%} of the {volume:,} visits that start on '{title}' leave without a second "
        f"action (site median {median:.0%}): at the median about {kept:,} more would have "
        f"stayed in {p.window_days} days. Check that the campaigns and searches sending them "
        f"promise what the page shows, and put {offer} on its first screen."
    )


# --------------------------------------------------------------------------- funnel


def funnel_sessions(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """One row per session that started in [start, end): its day, device, source and which
    funnel steps it reached (any order), read from the ``sessions`` table."""
    return con.execute(
        f"""
        SELECT session_id, day, device, traffic_source, TRUE AS session,
               product_views > 0 AS product_view, add_to_cart > 0 AS add_to_cart,
               checkout_starts > 0 AS checkout_start, purchases > 0 AS purchase
        FROM {tables.SESSIONS}
        WHERE day >= ? AND day < ?
        """,
        [start.date(), end.date()],
    ).pl()


def _step_rates(sessions: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per group and step: sessions entering the step, how many reach the next, the rate."""
    frames = []
    for (a, a_label), (b, b_label) in zip(FUNNEL, FUNNEL[1:], strict=False):
        frames.append(
            sessions.filter(pl.col(a).fill_null(False))
            .group_by(by or pl.lit(1).alias("_all"))
            .agg(entered=pl.len(), reached=pl.col(b).fill_null(False).sum())
            .with_columns(step=pl.lit(f"{a} -> {b}"), label=pl.lit(f"{a_label} -> {b_label}"))
        )
    return pl.concat(frames, how="diagonal").with_columns(
        rate=pl.col("reached") / pl.col("entered")
    )


def _day_action(
    step: str, day: date, rate: float, usual: float, entered: int, last_day: date
) -> str:
    """Advice for one day's drop in a funnel step, with the sessions it cost."""
    lost = round(entered * (usual - rate))
    if step.startswith("session"):
        return (
            f"On {day} only {rate:.0%} of {entered:,} sessions viewed a product (usually "
            f"{usual:.0%}), about {lost:,} fewer: check that day's traffic mix (a campaign's "
            "landing page, bots) and whether its landing pages link to products."
        )
    first = step.split(" -> ")[0]
    suspects = _STEP_SUSPECTS.get(first, "the step's pages")
    urgency = (
        "It is the latest day: alert the on-call engineer now."
        if day == last_day
        else f"If nothing changed since, look for what was released or down on {day}."
    )
    return (
        f"On {day} the step converted {rate:.0%} instead of the usual {usual:.0%}: about "
        f"{lost:,} of {entered:,} sessions did not go on. Check deploys, errors and outages in "
        f"{suspects} for that day. {urgency}"
    )


def _segment_action(
    step: str, dim: str, value: str, rate: float, overall: float, entered: int
) -> str:
    """Advice for a device or channel whose step converts below the site, with the gap."""
    lost = round(entered * (overall - rate))
    first = step.split(" -> ")[0]
    suspects = _STEP_SUSPECTS.get(first, "the step's pages")
    where = f"on a real {value} device" if dim == "device" else f"arriving from {value} traffic"
    return (
        f"{value} ({dim}) converts {rate:.0%} at this step against {overall:.0%} overall: at "
        f"the overall rate about {lost:,} more of its {entered:,} sessions would have gone on. "
        f"Walk through {suspects} {where}, looking for layout bugs, slow pages or a broken form."
    )


def funnel_insights(sessions: pl.DataFrame, p: InsightParams, last_day: date) -> list[dict]:
    if sessions.is_empty():
        return []
    overall = _step_rates(sessions, []).select("step", overall_rate="rate")
    rows: list[dict] = []
    for dim in ("device", "traffic_source"):
        lagging_steps = (
            _step_rates(sessions.with_columns(pl.col(dim).fill_null("unknown")), [dim])
            .join(overall, on="step")
            .filter((pl.col("entered") >= p.funnel_min_sessions) & (pl.col("overall_rate") > 0))
            .with_columns(gap=1 - pl.col("rate") / pl.col("overall_rate"))
            .filter(pl.col("gap") >= p.funnel_gap)
            .sort("gap", descending=True)
        )
        for r in lagging_steps.head(p.max_per_kind).iter_rows(named=True):
            rows.append(
                {
                    "insight_id": f"funnel_dropoff:{r['step']}:{dim}={r[dim]}",
                    "kind": "funnel_dropoff",
                    "severity": _severity(r["gap"], 0.5, 0.35),
                    "subject": f"{r['step']} [{dim}={r[dim]}]",
                    "subject_title": f"{r['label']} ({dim} {r[dim]})",
                    "metric": "step_conversion",
                    "value": r["rate"],
                    "baseline": r["overall_rate"],
                    "volume": r["entered"],
                    "details": (
                        f"{r['reached']:,} of {r['entered']:,} {dim}={r[dim]} sessions "
                        f"({r['rate']:.1%}) made '{r['label']}' vs {r['overall_rate']:.1%} overall "
                        f"({r['gap']:.0%} worse)"
                    ),
                    "suggested_action": _segment_action(
                        r["step"], dim, r[dim], r["rate"], r["overall_rate"], r["entered"]
                    ),
                }
            )
    daily = _step_rates(sessions, ["day"])
    first_recent = last_day - timedelta(days=p.recent_days - 1)
    for _step, group in daily.group_by("step"):
        group = group.filter(pl.col("entered") >= p.funnel_min_day_sessions)
        if group.height < 7:
            continue
        median = float(group["rate"].median())
        mad = float((group["rate"] - median).abs().median()) * 1.4826
        # A day's spread: the day-to-day scatter, or binomial noise at its volume if larger.
        binomial = (median * (1 - median) / pl.col("entered")).sqrt()
        spread = pl.max_horizontal(pl.lit(max(mad, 0.02 * median, 1e-6)), binomial)
        low = (
            group.with_columns(z=(pl.col("rate") - median) / spread)
            .filter((pl.col("day") >= first_recent) & (pl.col("z") <= -p.funnel_z))
            .sort("day")
        )
        for r in low.iter_rows(named=True):
            z = r["z"]
            rows.append(
                {
                    "insight_id": f"funnel_dropoff:{r['step']}:day={r['day']}",
                    "kind": "funnel_dropoff",
                    "severity": "high" if z <= -2 * p.funnel_z else "medium",
                    "subject": f"{r['step']} [day={r['day']}]",
                    "subject_title": f"{r['label']} on {r['day']}",
                    "metric": "step_conversion",
                    "value": r["rate"],
                    "baseline": median,
                    "volume": r["entered"],
                    "details": (
                        f"on {r['day']} {r['reached']:,} of {r['entered']:,} sessions "
                        f"({r['rate']:.1%})"
                        f" made '{r['label']}' vs a usual {median:.1%} (robust z {z:.1f})"
                    ),
                    "suggested_action": _day_action(
                        r["step"], r["day"], r["rate"], median, r["entered"], last_day
                    ),
                }
            )
    return rows


# ------------------------------------------------------------------ recommendations & content


def never_recommended(
    pages: pl.DataFrame,
    recommended: pl.DataFrame,
    n_lists: int,
    stats: pl.DataFrame,
    candidate_types: set[str] | None,
    p: InsightParams,
) -> list[dict]:
    """Candidate pages in nobody's recommendation list (``recommended``: page_id), busiest first."""
    shown = set(recommended["page_id"].unique().to_list()) if recommended.height else set()
    cands = (
        pages
        if candidate_types is None
        else pages.filter(pl.col("page_type").is_in(sorted(candidate_types)))
    )
    views = stats.select("page_id", "views")
    gaps = (
        cands.filter(~pl.col("page_id").is_in(sorted(shown)))
        .join(views, on="page_id", how="left")
        .with_columns(pl.col("views").fill_null(0))
        .sort("views", descending=True)
    )
    if gaps.is_empty():
        return []
    busy = float(stats["views"].quantile(0.5)) if stats.height else 0.0
    rows = []
    for r in gaps.head(p.max_per_kind).iter_rows(named=True):
        rows.append(
            {
                "insight_id": f"never_recommended:{r['page_id']}",
                "kind": "never_recommended",
                "severity": "medium" if r["views"] >= busy and busy > 0 else "low",
                "subject": r["page_id"],
                "subject_title": r["title"] or r["page_id"],
                "metric": "times_recommended",
                "value": 0.0,
                "baseline": float(n_lists),
                "volume": r["views"],
                "details": (
                    f"in none of {n_lists:,} users' recommendation lists; "
                    + (
                        f"{r['views']:,} views in the window"
                        if r["views"]
                        else "no views in the window either: nobody reaches it"
                    )
                    + f" ({len(gaps)} such pages in total)"
                ),
                "suggested_action": _unrecommended_action(
                    r["title"] or r["page_id"], r.get("category"), r["views"], n_lists, p
                ),
            }
        )
    return rows


def _unrecommended_action(
    title: str, category: str | None, views: int, n_lists: int, p: InsightParams
) -> str:
    home = f"the '{category}' category page" if category else "its category page"
    if views:
        return (
            f"'{title}' drew {views:,} views in {p.window_days} days yet none of {n_lists:,} "
            f"recommendation lists shows it: enrich its description so content similarity finds "
            f"it, and add it to related-product slots on {home}."
        )
    return (
        f"Nobody reached '{title}' in {p.window_days} days and none of {n_lists:,} lists shows "
        f"it: link it from {home} if it still matters, otherwise retire it."
    )


def content_islands(
    page_embeddings: pl.DataFrame, similar: pl.DataFrame, pages: pl.DataFrame, p: InsightParams
) -> list[dict]:
    """Pages with no text, or whose nearest other page is below the similarity threshold."""
    best = similar.filter(pl.col("rank") == 1).select(
        "page_id", "similarity", nearest="similar_title"
    )
    frame = (
        page_embeddings.select("page_id", "has_text")
        .join(best, on="page_id", how="left")
        .join(pages.select("page_id", "title"), on="page_id", how="left")
    )
    islands = frame.filter(
        ~pl.col("has_text") | (pl.col("similarity").fill_null(0.0) < p.island_similarity)
    ).sort(pl.col("similarity").fill_null(-1.0))
    rows = []
    for r in islands.head(p.max_per_kind).iter_rows(named=True):
        empty = not r["has_text"]
        sim = r["similarity"] if r["similarity"] is not None else 0.0
        rows.append(
            {
                "insight_id": f"content_island:{r['page_id']}",
                "kind": "content_island",
                "severity": "high" if empty else _severity(p.island_similarity - sim, 0.15, 0.05),
                "subject": r["page_id"],
                "subject_title": r["title"] or r["page_id"],
                "metric": "max_similarity",
                "value": float(sim),
                "baseline": p.island_similarity,
                "volume": 0,
                "details": (
                    "the page has no title, description or category to embed"
                    if empty
                    else f"closest page is '{r['nearest']}' at cosine {sim:.2f}, below "
                    f"{p.island_similarity:.2f}: nothing in the catalogue is close to it"
                ),
                "suggested_action": _island_action(
                    r["title"] or r["page_id"], r["nearest"], sim, empty, p
                ),
            }
        )
    return rows


def _island_action(
    title: str, nearest: str | None, similarity: float, empty: bool, p: InsightParams
) -> str:
    if empty:
        return (
            f"'{title}' has no title, description or category to embed: write them so search, "
            "content similarity and recommendations can find it."
        )
    return (
        f"The page closest to '{title}' is '{nearest}' at cosine {similarity:.2f} (an island "
        f"is below {p.island_similarity:.2f}): link the two, or describe '{title}' in words "
        "its likely readers use, so it gets neighbours to be recommended beside."
    )


def build_insights(
    con: duckdb.DuckDBPyConnection,
    pages: pl.DataFrame,
    page_embeddings: pl.DataFrame,
    similar: pl.DataFrame,
    recommended: pl.DataFrame,
    n_lists: int,
    candidate_types: set[str] | None,
    end: datetime,
    p: InsightParams = InsightParams(),
) -> pl.DataFrame:
    """All insights over the last ``window_days`` before ``end`` (a midnight), most severe first.

    Reads ``sessions`` (the funnel, by session start day) and the window's ``events`` (which
    page each session entered and left by).

    ``recommended``: the distinct page_ids of user_recommendations; ``n_lists``: users with a list.
    """
    start = end - timedelta(days=p.window_days)
    as_of = (end - timedelta(days=1)).date()
    stats = page_exit_stats(con, start, end)
    sessions = funnel_sessions(con, start, end)
    rows = (
        page_insights(stats, pages, p)
        + funnel_insights(sessions, p, as_of)
        + never_recommended(pages, recommended, n_lists, stats, candidate_types, p)
        + content_islands(page_embeddings, similar, pages, p)
    )
    out = _frame(rows, as_of)
    if out.is_empty():
        return out
    return out.sort(
        pl.col("severity").replace_strict(_SEVERITY_ORDER, return_dtype=pl.Int32),
        "kind",
        pl.col("volume"),
        descending=[False, False, True],
    ).unique("insight_id", keep="first", maintain_order=True)


def severity_counts(insights: pl.DataFrame) -> dict[str, int]:
    """How many insights of each kind (for asset metadata)."""
    if insights.is_empty():
        return {}
    return dict(
        zip(
            *insights.group_by("kind").len().sort("kind").to_dict(as_series=False).values(),
            strict=False,
        )
    )
