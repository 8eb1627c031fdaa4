"""The synthetic behaviour generator: users, sessions and events with known ground truth.

Deterministic: the population comes from (seed, start_date, users, days) and each day's events
from (seed, that date) on top of it, so re-generating a day always gives the same rows.
Everything is vectorized numpy; 10M events take a few seconds.

Each user has a latent persona that drives how often they visit, how long they stay, which page
types they read and how likely they are to buy, and a favourite category that drives which
pages they look at (so recommendations are learnable). Traffic follows a weekly cycle and a
gentle upward trend. Anomalies are planted on known dates and returned as ground truth.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ubap_assets.core.catalogue import categories, page_catalogue
from ubap_assets.core.schema import (
    EVENTS_SCHEMA,
    INJECTED_ANOMALIES_SCHEMA,
    USER_PERSONAS_SCHEMA,
    USERS_SCHEMA,
)

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "CA", "AU", "IN")
COUNTRY_SHARE = (0.28, 0.12, 0.11, 0.08, 0.06, 0.06, 0.05, 0.04, 0.04, 0.06, 0.05, 0.05)
DEVICES = ("mobile", "desktop", "tablet")
SOURCES = ("organic", "direct", "paid", "social", "email", "referral")
CAMPAIGN_SOURCE = "campaign"
# Monday .. Sunday
WEEKDAY_FACTOR = np.array([1.0, 1.06, 1.05, 1.0, 0.93, 0.78, 0.83])
# Relative traffic by hour of day (UTC), midnight first: quiet nights, an evening peak.
HOUR_WEIGHTS = np.fromstring(
    "1 .6 .4 .3 .3 .5 1 2 3 3.5 3.6 3.7 4 3.8 3.5 3.4 3.6 4 4.6 5.2 5.4 4.6 3.2 2", sep=" "
)
# Page-type order used by the persona mixes below.
BROWSE_TYPES = ("home", "category", "product", "blog", "help", "pricing", "deals", "search")


@dataclass(frozen=True)
class Persona:
    share: float  # of the population
    visit_rate: float  # expected sessions per day
    bounce: float  # probability a session is a single page view
    pages_mean: float  # mean page views of a non-bounce session
    type_mix: tuple[float, ...]  # weights over BROWSE_TYPES
    add_to_cart: float  # per product page view
    checkout: float  # per session with something in the cart
    purchase: float  # per checkout started
    spend: float  # revenue multiplier
    device_mix: tuple[float, float, float]
    source_mix: tuple[float, ...]


PERSONAS: dict[str, Persona] = {
    "buyer": Persona(
        0.17,
        0.11,
        0.12,
        6.0,
        (0.10, 0.15, 0.55, 0.05, 0.04, 0.03, 0.05, 0.03),
        0.22,
        0.70,
        0.80,
        1.0,
        (0.45, 0.48, 0.07),
        (0.30, 0.25, 0.20, 0.05, 0.15, 0.05),
    ),
    "browser": Persona(
        0.28,
        0.09,
        0.22,
        5.0,
        (0.12, 0.25, 0.45, 0.06, 0.02, 0.02, 0.06, 0.02),
        0.05,
        0.30,
        0.50,
        0.8,
        (0.62, 0.30, 0.08),
        (0.30, 0.15, 0.15, 0.30, 0.05, 0.05),
    ),
    "researcher": Persona(
        0.20,
        0.07,
        0.15,
        7.0,
        (0.06, 0.08, 0.18, 0.45, 0.18, 0.03, 0.01, 0.01),
        0.03,
        0.35,
        0.60,
        0.9,
        (0.30, 0.62, 0.08),
        (0.55, 0.15, 0.05, 0.05, 0.05, 0.15),
    ),
    "bouncer": Persona(
        0.25,
        0.05,
        0.88,
        2.0,
        (0.35, 0.20, 0.30, 0.10, 0.02, 0.01, 0.01, 0.01),
        0.01,
        0.20,
        0.40,
        0.6,
        (0.75, 0.18, 0.07),
        (0.20, 0.05, 0.35, 0.35, 0.02, 0.03),
    ),
    "loyal": Persona(
        0.10,
        0.28,
        0.08,
        8.0,
        (0.12, 0.12, 0.50, 0.08, 0.04, 0.06, 0.06, 0.02),
        0.28,
        0.80,
        0.85,
        1.4,
        (0.40, 0.52, 0.08),
        (0.10, 0.50, 0.05, 0.05, 0.28, 0.02),
    ),
}
PERSONA_NAMES = tuple(PERSONAS)


@dataclass(frozen=True)
class WorldSpec:
    """What the generator makes: ``users`` people over ``days`` days from ``start_date``."""

    users: int = 20_000
    days: int = 90
    seed: int = 7
    start_date: date = date(2026, 8, 1)

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be at least 1 (got {self.users})")
        if self.days < 1:
            raise ValueError(f"days must be at least 1 (got {self.days})")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative (got {self.seed})")

    @property
    def end_date(self) -> date:
        """The last day of the history (inclusive)."""
        return self.start_date + timedelta(days=self.days - 1)

    def dates(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class Population:
    """The users as numpy arrays (index = position), plus their frames."""

    user_id: np.ndarray
    signup_day: np.ndarray  # days relative to start_date (negative = before the history)
    persona: np.ndarray  # index into PERSONA_NAMES
    favourite: np.ndarray  # index into categories()
    second: np.ndarray  # a second favourite category
    activity: np.ndarray  # per-user multiplier on the visit rate
    device: np.ndarray
    source: np.ndarray
    country: np.ndarray


@dataclass(frozen=True)
class World:
    users: pl.DataFrame
    pages: pl.DataFrame
    events: pl.DataFrame
    personas: pl.DataFrame
    anomalies: pl.DataFrame


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def _persona_param(name: str) -> np.ndarray:
    return np.array([getattr(PERSONAS[p], name) for p in PERSONA_NAMES], dtype=float)


def _pick_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return (u > cum).sum(axis=1)


def population(spec: WorldSpec) -> Population:
    rng = _rng(spec.seed, 1)
    n = spec.users
    shares = _persona_param("share")
    persona = rng.choice(len(PERSONA_NAMES), size=n, p=shares / shares.sum())
    n_cat = len(categories())
    favourite = rng.integers(0, n_cat, size=n)
    second = (favourite + rng.integers(1, n_cat, size=n)) % n_cat
    # Two thirds of the users signed up before the history starts, the rest during it.
    lead_in = max(spec.days * 2, 14)
    signup_day = rng.integers(-lead_in, spec.days, size=n)
    activity = rng.lognormal(mean=0.0, sigma=0.45, size=n)
    device_mix = np.array([PERSONAS[p].device_mix for p in PERSONA_NAMES])[persona]
    source_mix = np.array([PERSONAS[p].source_mix for p in PERSONA_NAMES])[persona]
    device = _pick_rows(rng, device_mix)
    source = _pick_rows(rng, source_mix)
    country = rng.choice(len(COUNTRIES), size=n, p=np.array(COUNTRY_SHARE) / sum(COUNTRY_SHARE))
    user_id = np.array([f"u{i:07d}" for i in range(n)], dtype=object)
    return Population(
        user_id, signup_day, persona, favourite, second, activity, device, source, country
    )


def users_frame(spec: WorldSpec, pop: Population) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": pop.user_id,
            "signup_date": [spec.start_date + timedelta(days=int(d)) for d in pop.signup_day],
            "country": np.array(COUNTRIES, dtype=object)[pop.country],
            "device": np.array(DEVICES, dtype=object)[pop.device],
            "traffic_source": np.array(SOURCES, dtype=object)[pop.source],
        },
        schema=USERS_SCHEMA,
    )


def _session_purchase_probability(persona: int, favourite_boost: float = 1.0) -> float:
    p = PERSONAS[PERSONA_NAMES[persona]]
    product_share = p.type_mix[2] / sum(p.type_mix)
    pages = (1 - p.bounce) * p.pages_mean
    p_cart = 1 - (1 - min(p.add_to_cart * favourite_boost, 0.95) * product_share) ** pages
    return p_cart * p.checkout * p.purchase


def personas_frame(spec: WorldSpec, pop: Population) -> pl.DataFrame:
    """Ground truth: persona, favourite category and the true 14-day purchase propensity."""
    per_session = np.array([_session_purchase_probability(i, 1.3) for i in range(len(PERSONAS))])
    rate = _persona_param("visit_rate")[pop.persona] * pop.activity * WEEKDAY_FACTOR.mean()
    propensity = 1 - np.exp(-14 * rate * per_session[pop.persona])
    return pl.DataFrame(
        {
            "user_id": pop.user_id,
            "persona": np.array(PERSONA_NAMES, dtype=object)[pop.persona],
            "favourite_category": np.array(categories(), dtype=object)[pop.favourite],
            "activity": pop.activity,
            "purchase_propensity_14d": propensity,
        },
        schema=USER_PERSONAS_SCHEMA,
    )


# --- anomalies -------------------------------------------------------------------------------

_ANOMALY_KINDS = (
    ("checkout_outage", "conversion_rate", "drop", "checkout errors: almost no purchases"),
    ("campaign_spike", "sessions", "spike", "a campaign brings a burst of new sessions"),
    ("bot_burst", "page_views", "spike", "a crawler hammers product pages"),
)


def anomaly_plan(spec: WorldSpec, through: date | None = None) -> pl.DataFrame:
    """Planted anomalies on or before ``through`` (default: the last day of ``spec``).

    In the first ``spec.days`` days: one of each kind per ~30 days after a 3-4 week clean
    baseline, never on the last of those days. After them (the world grows a day each night):
    one anomaly per slot of ``width`` days, the kinds in turn, its day drawn from (seed, slot).
    A day's anomalies depend only on the world (seed, start, days), never on how far it has been
    generated, so the plan through a later day extends the plan through an earlier one.
    """
    through = spec.end_date if through is None else through
    rng = _rng(spec.seed, 2)
    baseline, width = (28, 10) if spec.days >= 70 else (21, 6)
    usable = spec.days - baseline - 1  # never in the baseline, never the last day
    slots = usable // width
    offsets: list[int] = []
    if slots >= 1:
        n = min(slots, max(len(_ANOMALY_KINDS), (spec.days // 30) * len(_ANOMALY_KINDS)))
        chosen = np.sort(rng.choice(slots, size=n, replace=False))
        offsets = [baseline + int(slot) * width + int(rng.integers(0, width)) for slot in chosen]
    # Beyond the first history: slot j covers [grown + j * width, grown + (j + 1) * width).
    grown, last = max(spec.days, baseline), (through - spec.start_date).days
    for j in range((last - grown) // width + 1 if last >= grown else 0):
        offsets.append(grown + j * width + int(_rng(spec.seed, 2, 1, j).integers(0, width)))
    rows = []
    for i, offset in enumerate(offsets):
        if offset > last:
            break
        kind, metric, direction, text = _ANOMALY_KINDS[i % len(_ANOMALY_KINDS)]
        rows.append(
            {
                "anomaly_date": spec.start_date + timedelta(days=offset),
                "kind": kind,
                "metric": metric,
                "direction": direction,
                "description": text,
            }
        )
    return pl.DataFrame(rows, schema=INJECTED_ANOMALIES_SCHEMA)


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalogue:
    page_ids: np.ndarray
    by_type: dict[str, np.ndarray]  # page_type -> page indices
    by_type_category: dict[tuple[str, int], np.ndarray]
    price: np.ndarray
    checkout: int
    confirmation: int
    search: int


def _catalogue(pages: pl.DataFrame) -> _Catalogue:
    cats = {c: i for i, c in enumerate(categories())}
    types = pages["page_type"].to_numpy()
    category = pages["category"].to_numpy()
    urls = pages["url"].to_list()
    by_type = {t: np.flatnonzero(types == t) for t in set(types)}
    by_tc = {}
    for t in ("category", "product", "blog"):
        for c, ci in cats.items():
            by_tc[(t, ci)] = np.flatnonzero((types == t) & (category == c))
    return _Catalogue(
        page_ids=pages["page_id"].to_numpy(),
        by_type=by_type,
        by_type_category=by_tc,
        price=pages["price"].fill_null(0.0).to_numpy(),
        checkout=urls.index("/checkout"),
        confirmation=urls.index("/checkout/confirmation"),
        search=urls.index("/search"),
    )


def _choose_pages(
    rng: np.random.Generator,
    cat: _Catalogue,
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
                    pool = cat.by_type_category[(t, ci)]
                    # Popularity within a category is skewed: early products are the best sellers.
                    weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
                    out[sub] = rng.choice(pool, size=len(sub), p=weights / weights.sum())
        else:
            pool = cat.by_type[t]
            out[rows] = rng.choice(pool, size=len(rows))
    return out


def day_events(
    spec: WorldSpec,
    day: date,
    pop: Population,
    pages: pl.DataFrame,
    anomalies: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All events of one day, deterministic from (seed, day)."""
    day_index = (day - spec.start_date).days
    rng = _rng(spec.seed, 3, day.toordinal())
    cat = _catalogue(pages)
    if anomalies is None:
        anomalies = anomaly_plan(spec, through=day)
    kinds_today = set(anomalies.filter(pl.col("anomaly_date") == day)["kind"].to_list())

    # Sessions per user: persona rate x activity x weekday x trend.
    alive = np.flatnonzero(pop.signup_day <= day_index)
    rate = _persona_param("visit_rate")[pop.persona[alive]] * pop.activity[alive]
    rate *= WEEKDAY_FACTOR[day.weekday()] * (1 + 0.002 * day_index)
    counts = rng.poisson(rate)
    s_user = np.repeat(alive, counts)
    s_source = pop.source[s_user].copy()
    switch = rng.random(len(s_user)) < 0.25
    s_source[switch] = rng.integers(0, len(SOURCES), switch.sum())
    s_source_names = np.array(SOURCES, dtype=object)[s_source]
    if "campaign_spike" in kinds_today:
        # A campaign brings extra sessions (60% more) from users who mostly look and leave.
        extra = rng.choice(alive, size=int(len(s_user) * 0.6) + 1)
        s_user = np.concatenate([s_user, extra])
        s_source_names = np.concatenate(
            [s_source_names, np.full(len(extra), CAMPAIGN_SOURCE, dtype=object)]
        )
    n_sessions = len(s_user)
    persona = pop.persona[s_user]
    is_campaign = s_source_names == CAMPAIGN_SOURCE

    # Session length in page views.
    bounce_p = _persona_param("bounce")[persona]
    bounce_p = np.where(is_campaign, np.maximum(bounce_p, 0.55), bounce_p)
    bounced = rng.random(n_sessions) < bounce_p
    pages_mean = _persona_param("pages_mean")[persona]
    length = np.where(bounced, 1, 2 + rng.geometric(1.0 / np.maximum(pages_mean - 1, 1.01)) - 1)
    length = np.minimum(length, 40)
    if "bot_burst" in kinds_today:
        # A handful of sessions from one crawler, hundreds of product views each.
        n_bots = 6
        bot_users = rng.choice(alive, size=n_bots)
        s_user = np.concatenate([s_user, bot_users])
        s_source_names = np.concatenate([s_source_names, np.full(n_bots, "referral", dtype=object)])
        persona = np.concatenate([persona, pop.persona[bot_users]])
        bounced = np.concatenate([bounced, np.zeros(n_bots, bool)])
        total_sessions_views = max(int(length.sum() * 0.5), 400)
        length = np.concatenate([length, np.full(n_bots, total_sessions_views // n_bots)])
        is_bot = np.concatenate([np.zeros(n_sessions, bool), np.ones(n_bots, bool)])
        n_sessions += n_bots
    else:
        is_bot = np.zeros(n_sessions, bool)

    # Page views: type by persona mix (landing pages skew to home/category/blog), page by affinity.
    v_session = np.repeat(np.arange(n_sessions), length)
    v_pos = np.arange(len(v_session)) - np.repeat(np.cumsum(length) - length, length)
    v_user = s_user[v_session]
    mixes = np.array([PERSONAS[p].type_mix for p in PERSONA_NAMES])
    v_type = _pick_rows(rng, mixes[persona[v_session]])
    landing = (v_pos == 0) & (rng.random(len(v_session)) < 0.5)
    v_type[landing] = rng.choice([0, 1, 3], size=landing.sum(), p=[0.5, 0.3, 0.2])
    v_type[is_bot[v_session]] = BROWSE_TYPES.index("product")
    v_page = _choose_pages(rng, cat, v_type, pop.favourite[v_user], pop.second[v_user])

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
    fav_name = np.array(categories(), dtype=object)[pop.favourite[v_user]]
    fav_boost = np.where(page_category == fav_name, 1.3, 0.8)
    atc_p = _persona_param("add_to_cart")[persona[v_session]] * fav_boost
    cart = product_view & ~is_bot[v_session] & (rng.random(len(v_session)) < atc_p)

    # Checkout and purchase, per session with something in the cart.
    cart_sessions = np.unique(v_session[cart])
    checkout_p = _persona_param("checkout")[persona[cart_sessions]]
    started = cart_sessions[rng.random(len(cart_sessions)) < checkout_p]
    purchase_p = _persona_param("purchase")[persona[started]]
    if "checkout_outage" in kinds_today:
        purchase_p = purchase_p * 0.08
    bought = started[rng.random(len(started)) < purchase_p]
    cart_value = np.bincount(v_session[cart], weights=cat.price[v_page[cart]], minlength=n_sessions)
    spend = _persona_param("spend")[persona[bought]]
    revenue = np.round(cart_value[bought] * spend * rng.uniform(0.9, 1.1, len(bought)), 2)
    end_of_views = start + offsets[np.cumsum(length) - 1]

    def part(sessions, page_idx, t, kind, rev=None):
        n = len(sessions)
        return {
            "s": sessions,
            "page": page_idx,
            "t": t,
            "kind": np.full(n, kind, dtype=object),
            "revenue": rev if rev is not None else np.full(n, np.nan),
        }

    parts = [
        part(v_session, v_page, v_time, "page_view"),
        part(v_session[scroll], v_page[scroll], v_time[scroll] + 4, "scroll"),
        part(v_session[click], v_page[click], v_time[click] + 9, "click"),
        part(v_session[search], np.full(search.sum(), cat.search), v_time[search] + 12, "search"),
        part(v_session[cart], v_page[cart], v_time[cart] + 20, "add_to_cart"),
        part(
            started,
            np.full(len(started), cat.checkout),
            end_of_views[started] + 60,
            "checkout_start",
        ),
        part(
            bought,
            np.full(len(bought), cat.confirmation),
            end_of_views[bought] + 150,
            "purchase",
            revenue,
        ),
    ]
    sessions = np.concatenate([p["s"] for p in parts])
    seconds = np.minimum(np.concatenate([p["t"] for p in parts]), 86_399.999)
    order = np.lexsort((seconds, sessions))
    sessions, seconds = sessions[order], seconds[order]
    kinds = np.concatenate([p["kind"] for p in parts])[order]
    page_idx = np.concatenate([p["page"] for p in parts])[order]
    revenue_all = np.concatenate([p["revenue"] for p in parts])[order]
    users = s_user[sessions]
    stamp = day.strftime("%Y%m%d")
    midnight = datetime(day.year, day.month, day.day)
    # One in ten sessions happens on another device than the user's usual one.
    other = rng.random(n_sessions) < 0.1
    session_device = np.where(other, rng.integers(0, len(DEVICES), n_sessions), pop.device[s_user])
    device = session_device[sessions]
    frame = pl.DataFrame(
        {
            "seq": np.arange(len(sessions)),
            "session_no": sessions,
            "user_id": pop.user_id[users],
            "micros": (seconds * 1e6).astype(np.int64),
            "event_type": kinds,
            "page_id": cat.page_ids[page_idx],
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


def events_by_day(
    spec: WorldSpec,
    first: date,
    last: date,
    pop: Population | None = None,
    pages: pl.DataFrame | None = None,
) -> Iterator[pl.DataFrame]:
    """Each day's events, first..last inclusive (days after the history keep going)."""
    pop = pop if pop is not None else population(spec)
    pages = pages if pages is not None else page_catalogue()
    plan = anomaly_plan(spec, through=last)
    day = max(first, spec.start_date)
    while day <= last:
        yield day_events(spec, day, pop, pages, plan)
        day += timedelta(days=1)


def events_between(
    spec: WorldSpec,
    first: date,
    last: date,
    pop: Population | None = None,
    pages: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The events of first..last inclusive as one frame."""
    frames = list(events_by_day(spec, first, last, pop, pages))
    return pl.concat(frames) if frames else pl.DataFrame(schema=EVENTS_SCHEMA)


def generate_world(spec: WorldSpec) -> World:
    """Everything at once (tests, benchmarks): users, pages, events, ground truth."""
    pop = population(spec)
    pages = page_catalogue()
    return World(
        users=users_frame(spec, pop),
        pages=pages,
        events=events_between(spec, spec.start_date, spec.end_date, pop, pages),
        personas=personas_frame(spec, pop),
        anomalies=anomaly_plan(spec),
    )
