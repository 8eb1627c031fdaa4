"""The five latent personas and what each one does: the generator's behavioural parameters.

A persona drives how often a user visits, how long they stay, which page types they read, how
likely they are to buy and which device and traffic source they usually come from.
"""

from dataclasses import dataclass, fields

import numpy as np

DEVICES = ("mobile", "desktop", "tablet")
SOURCES = ("organic", "direct", "paid", "social", "email", "referral")
# Page-type order of the personas' type mixes.
BROWSE_TYPES = ("home", "category", "product", "blog", "help", "pricing", "deals", "search")
# Relative traffic by weekday, Monday .. Sunday.
WEEKDAY_FACTOR = np.array([1.0, 1.06, 1.05, 1.0, 0.93, 0.78, 0.83])

PERSONA_NAMES: tuple[str, ...] = ("buyer", "browser", "researcher", "bouncer", "loyal")
# One row per parameter, one column per persona (PERSONA_NAMES order), so that the personas
# compare at a glance. A "<mix>.<level>" row is the weight of that level in the persona's mix
# over BROWSE_TYPES, DEVICES or SOURCES.
# fmt: off
_PERSONA_TABLE: dict[str, tuple[float, ...]] = {
    #                       buyer browser research bouncer loyal
    "share":               (0.17, 0.28, 0.20, 0.25, 0.10),  # of the population
    "visit_rate":          (0.11, 0.09, 0.07, 0.05, 0.28),  # expected sessions per day
    "bounce":              (0.12, 0.22, 0.15, 0.88, 0.08),  # P(session is a single page view)
    "pages_mean":          (6.0,  5.0,  7.0,  2.0,  8.0),   # page views of a non-bounce session
    "add_to_cart":         (0.22, 0.05, 0.03, 0.01, 0.28),  # per product page view
    "checkout":            (0.70, 0.30, 0.35, 0.20, 0.80),  # per session with something in cart
    "purchase":            (0.80, 0.50, 0.60, 0.40, 0.85),  # per checkout started
    "spend":               (1.0,  0.8,  0.9,  0.6,  1.4),   # revenue multiplier
    "type_mix.home":       (0.10, 0.12, 0.06, 0.35, 0.12),
    "type_mix.category":   (0.15, 0.25, 0.08, 0.20, 0.12),
    "type_mix.product":    (0.55, 0.45, 0.18, 0.30, 0.50),
    "type_mix.blog":       (0.05, 0.06, 0.45, 0.10, 0.08),
    "type_mix.help":       (0.04, 0.02, 0.18, 0.02, 0.04),
    "type_mix.pricing":    (0.03, 0.02, 0.03, 0.01, 0.06),
    "type_mix.deals":      (0.05, 0.06, 0.01, 0.01, 0.06),
    "type_mix.search":     (0.03, 0.02, 0.01, 0.01, 0.02),
    "device_mix.mobile":   (0.45, 0.62, 0.30, 0.75, 0.40),
    "device_mix.desktop":  (0.48, 0.30, 0.62, 0.18, 0.52),
    "device_mix.tablet":   (0.07, 0.08, 0.08, 0.07, 0.08),
    "source_mix.organic":  (0.30, 0.30, 0.55, 0.20, 0.10),
    "source_mix.direct":   (0.25, 0.15, 0.15, 0.05, 0.50),
    "source_mix.paid":     (0.20, 0.15, 0.05, 0.35, 0.05),
    "source_mix.social":   (0.05, 0.30, 0.05, 0.35, 0.05),
    "source_mix.email":    (0.15, 0.05, 0.05, 0.02, 0.28),
    "source_mix.referral": (0.05, 0.05, 0.15, 0.03, 0.02),
}
# fmt: on
_MIX_LEVELS = {"type_mix": BROWSE_TYPES, "device_mix": DEVICES, "source_mix": SOURCES}


@dataclass(frozen=True)
class Persona:
    """One column of the persona table (the meaning of each field is noted there)."""

    share: float
    visit_rate: float
    bounce: float
    pages_mean: float
    type_mix: tuple[float, ...]
    add_to_cart: float
    checkout: float
    purchase: float
    spend: float
    device_mix: tuple[float, ...]
    source_mix: tuple[float, ...]


def _persona(column: int) -> Persona:
    values: dict[str, object] = {}
    for parameter in (f.name for f in fields(Persona)):
        if parameter in _MIX_LEVELS:
            values[parameter] = tuple(
                _PERSONA_TABLE[f"{parameter}.{level}"][column] for level in _MIX_LEVELS[parameter]
            )
        else:
            values[parameter] = _PERSONA_TABLE[parameter][column]
    return Persona(**values)


PERSONAS: dict[str, Persona] = {name: _persona(i) for i, name in enumerate(PERSONA_NAMES)}


def persona_values(parameter: str) -> np.ndarray:
    """A parameter of every persona, indexed by persona number (a mix gives one row each)."""
    return np.array([getattr(PERSONAS[name], parameter) for name in PERSONA_NAMES], dtype=float)


def session_purchase_probability(persona: int, favourite_boost: float = 1.0) -> float:
    """The chance that one session of ``persona`` ends in a purchase (from its parameters)."""
    p = PERSONAS[PERSONA_NAMES[persona]]
    product_share = p.type_mix[2] / sum(p.type_mix)
    pages = (1 - p.bounce) * p.pages_mean
    p_cart = 1 - (1 - min(p.add_to_cart * favourite_boost, 0.95) * product_share) ** pages
    return p_cart * p.checkout * p.purchase
