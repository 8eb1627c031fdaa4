"""The generator's entry points: a range of days' events, or the whole world at once."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from ubap_assets.core.catalogue import page_catalogue
from ubap_assets.core.schema import EVENTS_SCHEMA
from ubap_assets.core.synthetic.anomalies import anomaly_plan
from ubap_assets.core.synthetic.events import day_events
from ubap_assets.core.synthetic.population import (
    Population,
    personas_frame,
    population,
    users_frame,
)
from ubap_assets.core.synthetic.world_spec import WorldSpec


@dataclass(frozen=True)
class World:
    """Every table of a generated world: the data, the catalogue and the ground truth."""

    users: pl.DataFrame
    pages: pl.DataFrame
    events: pl.DataFrame
    personas: pl.DataFrame
    anomalies: pl.DataFrame


def events_by_day(
    spec: WorldSpec,
    first: date,
    last: date,
    people: Population | None = None,
    pages: pl.DataFrame | None = None,
) -> Iterator[pl.DataFrame]:
    """Each day's events, first..last inclusive (days after the history keep going)."""
    people = people if people is not None else population(spec)
    pages = pages if pages is not None else page_catalogue()
    plan = anomaly_plan(spec, through=last)
    day = max(first, spec.start_date)
    while day <= last:
        yield day_events(spec, day, people, pages, plan)
        day += timedelta(days=1)


def events_between(spec: WorldSpec, first: date, last: date) -> pl.DataFrame:
    """The events of first..last inclusive as one frame."""
    frames = list(events_by_day(spec, first, last))
    return pl.concat(frames) if frames else pl.DataFrame(schema=EVENTS_SCHEMA)


def generate_world(spec: WorldSpec) -> World:
    """Everything at once (tests, benchmarks): users, pages, events, ground truth."""
    people = population(spec)
    pages = page_catalogue()
    return World(
        users=users_frame(spec, people),
        pages=pages,
        events=pl.concat(events_by_day(spec, spec.start_date, spec.end_date, people, pages)),
        personas=personas_frame(spec, people),
        anomalies=anomaly_plan(spec),
    )
