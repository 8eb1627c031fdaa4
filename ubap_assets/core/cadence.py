"""When the models and the recommender's tuning retrain: at the start of each training period.

Dagster-free. Training data end at a *training boundary*: the latest midnight, at most the end
of the data, that starts a period of ``every_days`` days counted from Monday 1970-01-05 (so a
weekly cadence starts each Monday, UTC). Every run between two boundaries trains on exactly the
same data and gets the same models, so a nightly run need not retrain (it only scores), and a
full materialization on any day equals the nightly runs that led to it.
"""

from datetime import date, datetime, time, timedelta

EPOCH_MONDAY = date(1970, 1, 5)


def training_end(data_end: datetime, every_days: int) -> datetime:
    """The latest training boundary at or before ``data_end`` (midnight after the last day of
    data); ``every_days`` 1 trains on all the data."""
    if every_days < 1:
        raise ValueError(f"every_days must be at least 1 (got {every_days})")
    periods = (data_end.date() - EPOCH_MONDAY).days // every_days
    boundary = EPOCH_MONDAY + timedelta(days=periods * every_days)
    return datetime.combine(boundary, time(0))


def starts_period(day: date, every_days: int) -> bool:
    """Whether midnight at the start of ``day`` is a training boundary (the night after the day
    before it is when the new period's training runs)."""
    return (day - EPOCH_MONDAY).days % every_days == 0
