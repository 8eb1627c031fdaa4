"""What every query module needs from the reader, and the WHERE-clause builder they share."""

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import polars as pl


class KeyedRows(Protocol):
    def rows(self, value: str) -> pl.DataFrame: ...


class SnapshotAccess(Protocol):
    """The reader's plumbing the query mixins call (``SnapshotReader`` provides it)."""

    snapshot_id: str
    path: Path
    tables: frozenset[str]

    def has_table(self, table: str) -> bool: ...
    def require(self, *tables: str) -> None: ...
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame: ...
    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]: ...
    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...
    def keyed(self, table: str, key: str, order: tuple[str, ...] = ()) -> KeyedRows: ...


class Where:
    """A WHERE clause built from trusted column names, every value bound as a ``?`` parameter."""

    def __init__(self) -> None:
        self.clauses: list[str] = ["TRUE"]
        self.params: list[Any] = []

    def between(self, column: str, start: date | None, end: date | None) -> "Where":
        """``column`` in [start, end] (inclusive); a bound left out is not checked."""
        if start is not None:
            self.clauses.append(f'"{column}" >= ?')
            self.params.append(start)
        if end is not None:
            self.clauses.append(f'"{column}" <= ?')
            self.params.append(end)
        return self

    def equals(self, **values: Any) -> "Where":
        """``column = value`` for each value that is not None."""
        for column, value in values.items():
            if value is not None:
                self.clauses.append(f'"{column}" = ?')
                self.params.append(value)
        return self

    def also(self, clause: str, *params: Any) -> "Where":
        """A trusted SQL condition with its parameters."""
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


def select_where(reader: SnapshotAccess, table: str, where: Where, order_by: str) -> pl.DataFrame:
    """Every column of ``table`` (a contract name) where ``where`` holds, in ``order_by``."""
    reader.require(table)
    sql = f"SELECT * FROM {table} WHERE {where.sql} ORDER BY {order_by}"
    return reader.query(sql, where.params)


def first_or_none(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    return found[0] if found else None
