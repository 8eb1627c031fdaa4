"""Frames to response rows: paging, NaN guard, reasons."""

from typing import Any

import polars as pl
from fastapi import HTTPException

from ubap_api.deps import Paging


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts; a NaN (never expected in published tables) becomes null, not a 500.

    Plain Python on purpose: a polars expression here costs milliseconds per request.
    """
    rows = frame.to_dicts()
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    for row in rows:
        for name in floats:
            value = row[name]
            if value is not None and value != value:
                row[name] = None
    return rows


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
