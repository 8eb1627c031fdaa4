"""Frames to response rows: rounding at the edge, NaN guard, paging, reasons."""

from typing import Any

import numpy as np
import polars as pl
from fastapi import HTTPException

from ubap_api.deps import Paging

# Money columns, in the currency of the source: rounded to cents.
MONEY_DECIMALS = 2
# Every other decimal (rates, shares, means, scores): 6 significant digits, and never fewer
# than 2 decimals, so 0.33951234 answers 0.339512 and a large mean keeps its cents.
SIGNIFICANT_DIGITS = 6
MIN_DECIMALS = 2
COLUMNAR_FROM_ROWS = 100


def is_money(column: str) -> bool:
    return column in ("revenue", "price") or column.endswith("_revenue")


def rounded(values: np.ndarray, money: np.ndarray) -> np.ndarray:
    """``values`` (rows x columns) rounded by column kind (``money``: one flag per column);
    NaN and +-inf come back as NaN (null)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        significant = np.clip(SIGNIFICANT_DIGITS - 1 - magnitude, MIN_DECIMALS, 300)
        decimals = np.where(
            money, MONEY_DECIMALS, np.where(np.isfinite(significant), significant, 0)
        )
        scale = 10.0**decimals
        out = np.round(values * scale) / scale
    out[~np.isfinite(out)] = np.nan
    return out


def _rounded_in_place(rows: list[dict[str, Any]], columns: list[str]) -> None:
    values = np.array([[row[name] for name in columns] for row in rows], dtype=np.float64)
    out = rounded(values, np.array([is_money(name) for name in columns]))
    for row, row_values in zip(rows, out.tolist(), strict=True):
        for name, value in zip(columns, row_values, strict=True):
            row[name] = None if value != value else value


def round_row(row: dict[str, Any]) -> dict[str, Any]:
    """A single row (a reader's dict) rounded like ``records`` rounds frames."""
    out = dict(row)
    floats = [name for name, value in row.items() if isinstance(value, float)]
    if floats:
        _rounded_in_place([out], floats)
    return out


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, every float rounded by its column's kind in one place (money to cents;
    rates, shares, means and scores to 6 significant digits, never fewer than 2 decimals); a
    NaN or inf (never expected in published tables) becomes null, not a 500.

    One numpy pass over the floats. A large page goes through polars column-wise (a Python
    loop over its values costs more than the conversion), a small one value-wise (polars'
    fixed cost per call is larger than the whole page's).
    """
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    if not floats or frame.height < COLUMNAR_FROM_ROWS:
        rows = frame.to_dicts()
        if rows and floats:
            _rounded_in_place(rows, floats)
        return rows
    values = frame.select(floats).to_numpy().astype(np.float64, copy=False)
    out = rounded(values, np.array([is_money(name) for name in floats]))
    return frame.with_columns(pl.from_numpy(out, schema=floats).fill_nan(None)).to_dicts()


def page_of(frame: pl.DataFrame, paging: Paging) -> dict[str, Any]:
    """One page of an ordered frame as {data, count, total, limit, offset}."""
    data = records(frame.slice(paging.offset, paging.limit))
    return {
        "data": data,
        "count": len(data),
        "total": frame.height,
        "limit": paging.limit,
        "offset": paging.offset,
    }


def with_reasons(row: dict[str, Any]) -> dict[str, Any]:
    """reason_1..reason_3 folded into one list of non-empty sentences."""
    reasons = [row.get(f"reason_{i}") for i in (1, 2, 3)]
    return {**row, "reasons": [r for r in reasons if r]}


def not_found(what: str, key: str, hint: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"unknown {what} {key!r}: {hint}")
