"""The synthetic users: who they are (persona, favourite categories, habits) and their frames.

The population depends only on (seed, start_date, users, days), so every day's events are drawn
on top of the same people.
"""

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from ubap_assets.core.catalogue import categories
from ubap_assets.core.schema import USER_PERSONAS_SCHEMA, USERS_SCHEMA
from ubap_assets.core.synthetic.personas import (
    DEVICES,
    PERSONA_NAMES,
    PERSONAS,
    SOURCES,
    WEEKDAY_FACTOR,
    persona_values,
    session_purchase_probability,
)
from ubap_assets.core.synthetic.world_spec import WorldSpec

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "CA", "AU", "IN")
COUNTRY_SHARE = (0.28, 0.12, 0.11, 0.08, 0.06, 0.06, 0.05, 0.04, 0.04, 0.06, 0.05, 0.05)


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


def pick_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return (u > cum).sum(axis=1)


def population(spec: WorldSpec) -> Population:
    rng = spec.rng(1)
    n = spec.users
    shares = persona_values("share")
    persona = rng.choice(len(PERSONA_NAMES), size=n, p=shares / shares.sum())
    n_cat = len(categories())
    favourite = rng.integers(0, n_cat, size=n)
    second = (favourite + rng.integers(1, n_cat, size=n)) % n_cat
    # Two thirds of the users signed up before the history starts, the rest during it.
    lead_in = max(spec.days * 2, 14)
    signup_day = rng.integers(-lead_in, spec.days, size=n)
    activity = rng.lognormal(mean=0.0, sigma=0.45, size=n)
    device = pick_rows(rng, persona_values("device_mix")[persona])
    source = pick_rows(rng, persona_values("source_mix")[persona])
    country = rng.choice(len(COUNTRIES), size=n, p=np.array(COUNTRY_SHARE) / sum(COUNTRY_SHARE))
    user_id = np.array([f"u{i:07d}" for i in range(n)], dtype=object)
    return Population(
        user_id, signup_day, persona, favourite, second, activity, device, source, country
    )


def users_frame(spec: WorldSpec, people: Population) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": people.user_id,
            "signup_date": [spec.start_date + timedelta(days=int(d)) for d in people.signup_day],
            "country": np.array(COUNTRIES, dtype=object)[people.country],
            "device": np.array(DEVICES, dtype=object)[people.device],
            "traffic_source": np.array(SOURCES, dtype=object)[people.source],
        },
        schema=USERS_SCHEMA,
    )


def personas_frame(spec: WorldSpec, people: Population) -> pl.DataFrame:
    """Ground truth: persona, favourite category and the true 14-day purchase propensity."""
    per_session = np.array([session_purchase_probability(i, 1.3) for i in range(len(PERSONAS))])
    rate = persona_values("visit_rate")[people.persona] * people.activity * WEEKDAY_FACTOR.mean()
    propensity = 1 - np.exp(-14 * rate * per_session[people.persona])
    return pl.DataFrame(
        {
            "user_id": people.user_id,
            "persona": np.array(PERSONA_NAMES, dtype=object)[people.persona],
            "favourite_category": np.array(categories(), dtype=object)[people.favourite],
            "activity": people.activity,
            "purchase_propensity_14d": propensity,
        },
        schema=USER_PERSONAS_SCHEMA,
    )
