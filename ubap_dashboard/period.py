"""The dashboard's one date range: presets, a custom range, and the period before it.

Pure (no Streamlit): ``ui.period_controls`` draws the widgets and calls ``resolve``.
"""

from dataclasses import dataclass
from datetime import date, timedelta

# The presets as shown and as written in the URL (``?period=7+days``): the last N days of
# the data, all of it, or a custom range.
PRESET_DAYS = {"7 days": 7, "28 days": 28, "90 days": 90}
ALL, CUSTOM = "All", "Custom"
PRESETS: tuple[str, ...] = (*PRESET_DAYS, ALL, CUSTOM)
DEFAULT_PRESET = "28 days"


@dataclass(frozen=True)
class Period:
    """The days shown, ``start``..``end`` (inclusive), and the same number of days just before.

    ``previous_start`` may lie before the data: ``previous_covered`` says whether the data
    holds the whole previous period (comparisons of totals need that).
    """

    start: date
    end: date
    previous_start: date
    previous_end: date
    compare: bool
    preset: str
    previous_covered: bool

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def shift(self) -> timedelta:
        """How far the previous period moves forward to lie on the current one."""
        return timedelta(days=self.days)

    def label(self) -> str:
        return f"{self.start:%d %b %Y} → {self.end:%d %b %Y} ({self.days} days)"

    def previous_label(self) -> str:
        return f"{self.previous_start:%d %b %Y} → {self.previous_end:%d %b %Y}"


def resolve(
    preset: str,
    first: date,
    last: date,
    custom: tuple[date, date] | None = None,
    compare: bool = False,
) -> Period:
    """The period a preset (or a custom range) means on data from ``first`` to ``last``.

    Presets end on ``last`` (the latest day in the data) and are clipped to ``first``; a
    custom range is clipped to the data too.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown period {preset!r}: pick one of {', '.join(PRESETS)}")
    if preset in PRESET_DAYS:
        start, end = max(first, last - timedelta(days=PRESET_DAYS[preset] - 1)), last
    elif preset == CUSTOM and custom:
        start, end = (max(first, min(custom)), min(last, max(custom)))
        if start > end:
            start, end = first, last
    else:
        start, end = first, last
    days = (end - start).days + 1
    previous_end = start - timedelta(days=1)
    previous_start = start - timedelta(days=days)
    return Period(
        start=start,
        end=end,
        previous_start=previous_start,
        previous_end=previous_end,
        compare=compare,
        preset=preset,
        previous_covered=previous_start >= first,
    )


def change_text(value: float | None, previous: float | None, is_rate: bool) -> str | None:
    """A change as people read it: rates in percentage points, counts and money in percent."""
    if value is None or previous is None:
        return None
    if is_rate:
        return f"{(value - previous) * 100:+.1f} pp"
    if previous == 0:
        return None
    return f"{(value - previous) / abs(previous):+.1%}"
