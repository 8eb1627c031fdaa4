"""The synthetic behaviour generator: users, sessions and events with known ground truth.

Deterministic: the population comes from (seed, start_date, users, days) and each day's events
from (seed, that date) on top of it, so re-generating a day always gives the same rows.
Everything is vectorized numpy; 10M events take a few seconds.

Each user has a latent persona that drives how often they visit, how long they stay, which page
types they read and how likely they are to buy, and a favourite category that drives which
pages they look at (so recommendations are learnable). Traffic follows a weekly cycle and a
gentle upward trend. Anomalies (multi-day, partial, some confined to one device or traffic
source) are planted on known dates and returned as ground truth; a clean world plants none.

One module per part; this package re-exports their public names (``synthetic.WorldSpec``):

- ``world_spec``: what to generate, and the seeded random stream of each part;
- ``personas``: the persona table and the devices, sources and page types it weighs;
- ``population``: the users and their ground-truth personas;
- ``anomalies``: the plan of planted anomalies;
- ``events``: one day's events;
- ``world``: ranges of days and the whole world at once.
"""

from ubap_assets.core.synthetic.anomalies import ANOMALY_KINDS, anomaly_plan
from ubap_assets.core.synthetic.events import HOUR_WEIGHTS, day_events
from ubap_assets.core.synthetic.personas import (
    BROWSE_TYPES,
    DEVICES,
    PERSONA_NAMES,
    PERSONAS,
    SOURCES,
    WEEKDAY_FACTOR,
    Persona,
    persona_values,
    session_purchase_probability,
)
from ubap_assets.core.synthetic.population import (
    COUNTRIES,
    COUNTRY_SHARE,
    Population,
    personas_frame,
    pick_rows,
    population,
    users_frame,
)
from ubap_assets.core.synthetic.world import World, events_between, events_by_day, generate_world
from ubap_assets.core.synthetic.world_spec import WorldSpec

__all__ = [
    "ANOMALY_KINDS",
    "BROWSE_TYPES",
    "COUNTRIES",
    "COUNTRY_SHARE",
    "DEVICES",
    "HOUR_WEIGHTS",
    "PERSONAS",
    "PERSONA_NAMES",
    "SOURCES",
    "WEEKDAY_FACTOR",
    "Persona",
    "Population",
    "World",
    "WorldSpec",
    "anomaly_plan",
    "day_events",
    "events_between",
    "events_by_day",
    "generate_world",
    "personas_frame",
    "persona_values",
    "pick_rows",
    "population",
    "session_purchase_probability",
    "users_frame",
]
