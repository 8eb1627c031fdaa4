"""One day of events: sessions, page views, engagement, carts and purchases, all vectorized.

A day's events are deterministic from (seed, that date) on top of the population, so a day can
be re-generated alone. The planted anomalies under way that day change them, within their scope
(all, one device or one traffic source): a traffic spike adds bouncy sessions, a bot burst adds
crawler sessions, a conversion drop takes away a share of the purchases. A day without an
anomaly draws exactly the same numbers as a clean world's.
"""

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from ubap_assets.core.catalogue import categories
from ubap_assets.core.schema import EVENTS_SCHEMA
from ubap_assets.core.synthetic.anomalies import active_on, anomaly_plan
from ubap_assets.core.synthetic.personas import (
    BROWSE_TYPES,
    DEVICES,
    SOURCES,
    WEEKDAY_FACTOR,
    persona_values,
)
from ubap_assets.core.synthetic.population import Population, pick_rows
from ubap_assets.core.synthetic.world_spec import WorldSpec

# Relative traffic by hour of day (UTC), midnight first: quiet nights, an evening peak.
HOUR_WEIGHTS = np.fromstring(
    "1 .6 .4 .3 .3 .5 1 2 3 3.5 3.6 3.7 4 3.8 3.5 3.4 3.6 4 4.6 5.2 5.4 4.6 3.2 2", sep=" "
)


@dataclass(frozen=True)
class _PageIndex:
    """The catalogue as arrays: ids and prices by position, positions by type (and category)."""

    page_ids: np.ndarray
    by_type: dict[str, np.ndarray]  # page_type -> page indices
    by_type_category: dict[tuple[str, int], np.ndarray]
    price: np.ndarray
    checkout: int
    confirmation: int
    search: int


def _page_index(pages: pl.DataFrame) -> _PageIndex:
    cats = {c: i for i, c in enumerate(categories())}
    types = pages["page_type"].to_numpy()
    category = pages["category"].to_numpy()
    urls = pages["url"].to_list()
    by_type = {t: np.flatnonzero(types == t) for t in set(types)}
    by_type_category = {}
    for t in ("category", "product", "blog"):
        for c, ci in cats.items():
            by_type_category[(t, ci)] = np.flatnonzero((types == t) & (category == c))
    return _PageIndex(
        page_ids=pages["page_id"].to_numpy(),
        by_type=by_type,
        by_type_category=by_type_category,
        price=pages["price"].fill_null(0.0).to_numpy(),
        checkout=urls.index("/checkout"),
        confirmation=urls.index("/checkout/confirmation"),
        search=urls.index("/search"),
    )


def _choose_pages(
    rng: np.random.Generator,
    page_index: _PageIndex,
    page_type: np.ndarray,
    favourite: np.ndarray,
    second: np.ndarray,
) -> np.ndarray:
    """A page per view: within its type, in the user's favourite category most of the time."""
    n = len(page_type)
    out = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    n_cat = len(categories())
    category = np.where(u < 0.62, favourite, np.where(u < 0.82, second, rng.integers(0, n_cat, n)))
    for ti, t in enumerate(BROWSE_TYPES):
        rows = np.flatnonzero(page_type == ti)
        if not len(rows):
            continue
        if t in ("category", "product", "blog"):
            for ci in range(n_cat):
                sub = rows[category[rows] == ci]
                if len(sub):
                    pool = page_index.by_type_category[(t, ci)]
                    # Popularity within a category is skewed: early products are the best sellers.
                    weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
                    out[sub] = rng.choice(pool, size=len(sub), p=weights / weights.sum())
        else:
            pool = page_index.by_type[t]
            out[rows] = rng.choice(pool, size=len(rows))
    return out


def _event_rows(
    sessions: np.ndarray,
    pages: np.ndarray,
    seconds: np.ndarray,
    event_type: str,
    revenue: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Events of one type: session number, page position, second of the day (and revenue)."""
    return {
        "session": sessions,
        "page": pages,
        "second": seconds,
        "event_type": np.full(len(sessions), event_type, dtype=object),
        "revenue": revenue if revenue is not None else np.full(len(sessions), np.nan),
    }


def _in_scope(anomaly: dict, source: np.ndarray, device: np.ndarray | None) -> np.ndarray:
    """Which sessions an anomaly confined to a device or a traffic source touches."""
    if anomaly["dimension"] == "traffic_source":
        return source == anomaly["dimension_value"]
    if anomaly["dimension"] == "device" and device is not None:
        return device == anomaly["dimension_value"]
    return np.ones(len(source), bool)


def day_events(
    spec: WorldSpec,
    day: date,
    people: Population,
    pages: pl.DataFrame,
    anomalies: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All events of one day, deterministic from (seed, day).

    The arrays prefixed ``s_`` hold one value per session, those prefixed ``v_`` one per page
    view. The order of the random draws is part of the output: changing it changes every day.
    """
    day_index = (day - spec.start_date).days
    rng = spec.rng(3, day.toordinal())
    page_index = _page_index(pages)
    if anomalies is None:
        anomalies = anomaly_plan(spec, through=day)
    today = {a["kind"]: a for a in active_on(anomalies, day)}

    # Sessions per user: persona rate x activity x weekday x trend.
    alive = np.flatnonzero(people.signup_day <= day_index)
    rate = persona_values("visit_rate")[people.persona[alive]] * people.activity[alive]
    rate *= WEEKDAY_FACTOR[day.weekday()] * (1 + 0.002 * day_index)
    counts = rng.poisson(rate)
    s_user = np.repeat(alive, counts)
    s_source = people.source[s_user].copy()
    switch = rng.random(len(s_user)) < 0.25
    s_source[switch] = rng.integers(0, len(SOURCES), switch.sum())
    s_source_names = np.array(SOURCES, dtype=object)[s_source]
    is_campaign = np.zeros(len(s_user), bool)
    if "traffic_spike" in today:
        # A campaign brings extra sessions (+magnitude in its scope) that mostly look and leave.
        spike = today["traffic_spike"]
        in_scope = _in_scope(spike, s_source_names, None)
        extra = rng.choice(alive, size=int(in_scope.sum() * spike["magnitude"]) + 1)
        if spike["dimension"] == "traffic_source":
            extra_source = np.full(len(extra), spike["dimension_value"], dtype=object)
        else:
            extra_source = rng.choice(s_source_names, size=len(extra))
        s_user = np.concatenate([s_user, extra])
        s_source_names = np.concatenate([s_source_names, extra_source])
        is_campaign = np.concatenate([is_campaign, np.ones(len(extra), bool)])
    n_sessions = len(s_user)
    persona = people.persona[s_user]

    # Session length in page views.
    bounce_p = persona_values("bounce")[persona]
    bounce_p = np.where(is_campaign, np.maximum(bounce_p, 0.55), bounce_p)
    bounced = rng.random(n_sessions) < bounce_p
    pages_mean = persona_values("pages_mean")[persona]
    length = np.where(bounced, 1, 2 + rng.geometric(1.0 / np.maximum(pages_mean - 1, 1.01)) - 1)
    length = np.minimum(length, 40)
    if "bot_burst" in today:
        # A handful of sessions from one crawler, hundreds of product views each.
        bot = today["bot_burst"]
        n_bots = 6
        bot_users = rng.choice(alive, size=n_bots)
        bot_source = bot["dimension_value"] if bot["dimension"] == "traffic_source" else "referral"
        s_user = np.concatenate([s_user, bot_users])
        s_source_names = np.concatenate([s_source_names, np.full(n_bots, bot_source, dtype=object)])
        persona = np.concatenate([persona, people.persona[bot_users]])
        bounced = np.concatenate([bounced, np.zeros(n_bots, bool)])
        in_scope = _in_scope(bot, s_source_names[:n_sessions], None)
        total_sessions_views = max(int(length[in_scope].sum() * bot["magnitude"]), 60)
        length = np.concatenate([length, np.full(n_bots, total_sessions_views // n_bots)])
        is_bot = np.concatenate([np.zeros(n_sessions, bool), np.ones(n_bots, bool)])
        n_sessions += n_bots
    else:
        is_bot = np.zeros(n_sessions, bool)

    # Page views: type by persona mix (landing pages skew to home/category/blog), page by affinity.
    v_session = np.repeat(np.arange(n_sessions), length)
    v_pos = np.arange(len(v_session)) - np.repeat(np.cumsum(length) - length, length)
    v_user = s_user[v_session]
    v_type = pick_rows(rng, persona_values("type_mix")[persona[v_session]])
    landing = (v_pos == 0) & (rng.random(len(v_session)) < 0.5)
    v_type[landing] = rng.choice([0, 1, 3], size=landing.sum(), p=[0.5, 0.3, 0.2])
    v_type[is_bot[v_session]] = BROWSE_TYPES.index("product")
    v_page = _choose_pages(rng, page_index, v_type, people.favourite[v_user], people.second[v_user])

    # Time: sessions start by hour of day; views ~45 s apart; whole sessions stay inside the day.
    gaps = rng.exponential(45.0, len(v_session)) + 3
    gaps[v_pos == 0] = 0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[np.cumsum(length) - length], length)
    duration = offsets[np.cumsum(length) - 1] + 240  # room for checkout events after the last view
    hour = rng.choice(24, size=n_sessions, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = hour * 3600 + rng.random(n_sessions) * 3600
    start = np.clip(np.minimum(start, 86_399 - duration), 0, None)
    v_time = start[v_session] + np.minimum(offsets, 86_000)

    # Engagement on each view.
    product_view = v_type == BROWSE_TYPES.index("product")
    not_single = length[v_session] > 1
    scroll = not_single & (rng.random(len(v_session)) < 0.55)
    click = not_single & (rng.random(len(v_session)) < 0.40)
    search = not_single & (rng.random(len(v_session)) < 0.06)
    page_category = pages["category"].to_numpy()[v_page]
    fav_name = np.array(categories(), dtype=object)[people.favourite[v_user]]
    fav_boost = np.where(page_category == fav_name, 1.3, 0.8)
    atc_p = persona_values("add_to_cart")[persona[v_session]] * fav_boost
    cart = product_view & ~is_bot[v_session] & (rng.random(len(v_session)) < atc_p)

    # Checkout and purchase, per session with something in the cart.
    cart_sessions = np.unique(v_session[cart])
    checkout_p = persona_values("checkout")[persona[cart_sessions]]
    started = cart_sessions[rng.random(len(cart_sessions)) < checkout_p]
    purchase_p = persona_values("purchase")[persona[started]]
    bought = started[rng.random(len(started)) < purchase_p]
    cart_value = np.bincount(
        v_session[cart], weights=page_index.price[v_page[cart]], minlength=n_sessions
    )
    spend = persona_values("spend")[persona[bought]]
    revenue = np.round(cart_value[bought] * spend * rng.uniform(0.9, 1.1, len(bought)), 2)
    end_of_views = start + offsets[np.cumsum(length) - 1]

    parts = [
        _event_rows(v_session, v_page, v_time, "page_view"),
        _event_rows(v_session[scroll], v_page[scroll], v_time[scroll] + 4, "scroll"),
        _event_rows(v_session[click], v_page[click], v_time[click] + 9, "click"),
        _event_rows(
            v_session[search],
            np.full(search.sum(), page_index.search),
            v_time[search] + 12,
            "search",
        ),
        _event_rows(v_session[cart], v_page[cart], v_time[cart] + 20, "add_to_cart"),
        _event_rows(
            started,
            np.full(len(started), page_index.checkout),
            end_of_views[started] + 60,
            "checkout_start",
        ),
        _event_rows(
            bought,
            np.full(len(bought), page_index.confirmation),
            end_of_views[bought] + 150,
            "purchase",
            revenue,
        ),
    ]
    sessions = np.concatenate([part["session"] for part in parts])
    seconds = np.minimum(np.concatenate([part["second"] for part in parts]), 86_399.999)
    order = np.lexsort((seconds, sessions))
    sessions, seconds = sessions[order], seconds[order]
    kinds = np.concatenate([part["event_type"] for part in parts])[order]
    page_positions = np.concatenate([part["page"] for part in parts])[order]
    revenue_all = np.concatenate([part["revenue"] for part in parts])[order]
    users = s_user[sessions]
    stamp = day.strftime("%Y%m%d")
    midnight = datetime(day.year, day.month, day.day)
    # One in ten sessions happens on another device than the user's usual one.
    other = rng.random(n_sessions) < 0.1
    usual_device = people.device[s_user]
    session_device = np.where(other, rng.integers(0, len(DEVICES), n_sessions), usual_device)
    if "conversion_drop" in today:
        # A share (-magnitude) of the purchases in scope fail: their purchase events are lost.
        drop = today["conversion_drop"]
        device_names = np.array(DEVICES, dtype=object)[session_device]
        fails = _in_scope(drop, s_source_names, device_names) & (
            spec.rng(3, day.toordinal(), 1).random(n_sessions) < -drop["magnitude"]
        )
        keep = ~((kinds == "purchase") & fails[sessions])
        sessions, seconds, kinds = sessions[keep], seconds[keep], kinds[keep]
        page_positions, revenue_all = page_positions[keep], revenue_all[keep]
        users = users[keep]
    device = session_device[sessions]
    frame = pl.DataFrame(
        {
            "seq": np.arange(len(sessions)),
            "session_no": sessions,
            "user_id": people.user_id[users],
            "micros": (seconds * 1e6).astype(np.int64),
            "event_type": kinds,
            "page_id": page_index.page_ids[page_positions],
            "device": np.array(DEVICES, dtype=object)[device],
            "traffic_source": s_source_names[sessions],
            "revenue": revenue_all,
        }
    )
    return frame.select(
        pl.format("e{}-{}", pl.lit(stamp), pl.col("seq").cast(pl.String).str.zfill(7)).alias(
            "event_id"
        ),
        "user_id",
        pl.format("s{}-{}", pl.lit(stamp), pl.col("session_no").cast(pl.String).str.zfill(6)).alias(
            "session_id"
        ),
        (pl.lit(midnight) + pl.duration(microseconds=pl.col("micros"))).alias("event_ts"),
        "event_type",
        "page_id",
        "device",
        "traffic_source",
        pl.col("revenue").fill_nan(None),
    ).cast(EVENTS_SCHEMA)
