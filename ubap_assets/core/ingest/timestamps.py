"""Timestamps of any common shape to naive UTC (vectorised; mixed zones per row)."""

from datetime import datetime

import polars as pl

# Tried in this order on the rows still unparsed. Aware ones first so an offset is never dropped.
AWARE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
    "%a, %d %b %Y %H:%M:%S %z",
)
UTC_SUFFIX_FORMATS: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S%.f UTC", "%Y-%m-%dT%H:%M:%S%.f UTC")
NAIVE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d",
)
EARLIEST = datetime(1990, 1, 1)
LATEST = datetime(2100, 1, 1)
_EPOCH_SCALE = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1, "epoch_ns": 0.001}


def _localize(s: pl.Series, tz: str) -> pl.Series:
    """Naive wall-clock times in ``tz`` to naive UTC (nonexistent DST times become null)."""
    s = s.cast(pl.Datetime("us"))
    if tz == "UTC":
        return s
    return (
        s.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )


def _aware_to_naive(s: pl.Series) -> pl.Series:
    return s.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))


def _from_epoch(values: pl.Series, fmt: str) -> pl.Series:
    """Numbers since 1970 to datetimes; with ``auto`` the unit follows each value's magnitude."""
    v = values.cast(pl.Float64, strict=False)
    if fmt in _EPOCH_SCALE:
        micros = v * _EPOCH_SCALE[fmt]
    else:
        mag = v.abs()
        micros = pl.select(
            pl.when(mag >= 1e17)
            .then(v / 1_000)
            .when(mag >= 1e14)
            .then(v)
            .when(mag >= 1e11)
            .then(v * 1_000)
            .otherwise(v * 1_000_000)
        ).to_series()
    micros = micros.round(0)
    return micros.cast(pl.Int64, strict=False).cast(pl.Datetime("us"))


def _parse_text(s: pl.Series, fmt: str, tz: str) -> pl.Series:
    s = s.str.strip_chars()
    s = s.set(s == "", None)
    if fmt in _EPOCH_SCALE:
        return _from_epoch(s, fmt)
    if fmt != "auto":
        parsed = s.str.to_datetime(fmt, strict=False, time_unit="us")
        if parsed.dtype.time_zone is not None:  # type: ignore[union-attr]
            return _aware_to_naive(parsed)
        return _localize(parsed, "UTC" if fmt.endswith("UTC") else tz)

    # Formats in the order they fit a sample, epoch numbers last; each pass reads only the rows
    # no earlier pass could parse, so one format costs one pass and a mixed file a few more.
    sample = s.drop_nulls().head(500)
    candidates = [(f, "aware") for f in AWARE_FORMATS]
    candidates += [(f, "utc") for f in UTC_SUFFIX_FORMATS] + [(f, "") for f in NAIVE_FORMATS]
    fits = [
        sample.str.to_datetime(f, strict=False, time_unit="us").is_not_null().sum()
        for f, _ in candidates
    ]
    order = sorted(range(len(candidates)), key=lambda i: -fits[i])
    out = pl.Series(s.name, [None] * len(s), dtype=pl.Datetime("us"))
    todo = s.is_not_null()
    for i in [*order, -1]:
        if not todo.any():
            break
        every = todo.all()
        idx = None if every else todo.arg_true()
        values = s if every else s.gather(idx)
        if i == -1:  # epoch numbers written as text (GA4 exports, Unix logs)
            numeric = values.str.contains(r"^-?\d{9,19}(\.\d+)?$")
            parsed = _from_epoch(values.set(~numeric, None), "auto")
        else:
            fmt_i, kind = candidates[i]
            parsed = values.str.to_datetime(fmt_i, strict=False, time_unit="us")
            if kind == "aware":
                parsed = _aware_to_naive(parsed)
            else:
                parsed = _localize(parsed, "UTC" if kind == "utc" else tz)
        ok = parsed.is_not_null()
        if every:
            out, todo = parsed, todo & ~ok
        elif ok.any():
            out = out.scatter(idx.filter(ok), parsed.filter(ok))
            todo = todo.scatter(idx.filter(ok), False)
    return out


def to_utc(s: pl.Series, fmt: str = "auto", tz: str = "UTC") -> pl.Series:
    """Any timestamp column (text, numbers, dates, naive or aware datetimes) to naive UTC.

    Values that cannot be read, or fall outside 1990..2100, become null.
    """
    dtype = s.dtype
    if s.null_count() == len(s):
        return pl.Series(s.name, [None] * len(s), dtype=pl.Datetime("us"))
    if isinstance(dtype, pl.Datetime):
        out = _aware_to_naive(s) if dtype.time_zone else _localize(s, tz)
    elif dtype == pl.Date:
        out = _localize(s.cast(pl.Datetime("us")), tz)
    elif dtype.is_numeric():
        out = _from_epoch(s, fmt if fmt in _EPOCH_SCALE else "auto")
    else:
        out = _parse_text(s.cast(pl.String), fmt, tz)
    out = out.cast(pl.Datetime("us"))
    in_range = (out >= EARLIEST) & (out < LATEST)
    return out.set(~in_range.fill_null(False), None).alias(s.name)
