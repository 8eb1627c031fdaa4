"""What the generator makes (``WorldSpec``) and the seeded random streams it draws from."""

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np


@dataclass(frozen=True)
class WorldSpec:
    """What the generator makes: ``users`` people over ``days`` days from ``start_date``;
    ``anomalies=False`` makes a clean world with nothing planted."""

    users: int = 20_000
    days: int = 90
    seed: int = 7
    start_date: date = date(2026, 8, 1)
    anomalies: bool = True

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

    def rng(self, *salt: int) -> np.random.Generator:
        """The random stream of one part of the world: the seed salted with what it draws.

        Each part (the population, the anomaly plan, one day's events) has its own stream, so
        that re-generating one never shifts the numbers of another.
        """
        return np.random.default_rng([self.seed, *salt])
