"""When the models, the segments' fit and the recommender's tuning retrain: once per period.

Dagster-free. Training data end at a *training boundary*: the latest midnight that starts a
period of ``every_days`` days counted from Monday 1970-01-05 (so a weekly cadence starts each
Monday, UTC) and leaves at least one day of data after it. That day matters: a session belongs to
the day it starts, and one that crosses midnight into the boundary is complete only once the
boundary's own day is in. Every run between two boundaries trains on exactly the same data and
gets the same models, so a nightly run need not retrain (it only scores), and a full
materialization on any day equals the nightly runs that led to it. The retraining night is the
one after the first day of a period.
"""

from datetime import date, datetime, time, timedelta

EPOCH_MONDAY = date(1970, 1, 5)


def training_end(data_end: datetime, every_days: int) -> datetime:
    """The latest training boundary with a day of data after it (``data_end`` is the midnight
    after the last day of data); ``every_days`` 1 trains on all but the last day."""
    if every_days < 1:
        raise ValueError(f"every_days must be at least 1 (got {every_days})")
    last_day = (data_end - timedelta(microseconds=1)).date()
    periods = (last_day - EPOCH_MONDAY).days // every_days
    boundary = EPOCH_MONDAY + timedelta(days=periods * every_days)
    return datetime.combine(boundary, time(0))


def starts_period(day: date, every_days: int) -> bool:
    """Whether ``day`` is the first day of a training period (the night after it retrains)."""
    return (day - EPOCH_MONDAY).days % every_days == 0
