"""A DuckDB-connection look-alike whose queries run on Spark over the lake.

Dagster-free. The trend functions (core/trends) take a DuckDB connection and ask it three things:
``execute(sql, params)`` with ``?`` or ``$name`` parameters, then ``.pl()``, ``.fetchone()`` or
``.fetchall()`` of the result. ``SparkConnection`` answers the same calls from Spark: the SQL
stays DuckDB's (one copy of the logic), SQLGlot transpiles it (engines/spark.py), and the result
comes back as the small frame or row the DuckDB connection would give.

What Spark reads: the lake's tables (sessions, user_daily, ...) plus small warehouse tables
shipped along (``shipped``: e.g. a weekly table as last written). Questions about the catalogue
(``information_schema``, as warehouse/introspect.py asks them) are answered by an in-memory
DuckDB that holds one empty table per name Spark can read, so ``table_exists`` means "Spark has
it" and the trend functions choose the same sources on both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import duckdb
import polars as pl
import pyarrow as pa

from ubap_assets.engines import lake
from ubap_assets.engines.spark import SparkDays, transpile


class SparkResult:
    """The answer of one query, read once (as Arrow) on the first fetch: a Spark DataFrame's,
    or a catalogue question's. ``fetchone`` gives the first row (the callers ask for one)."""

    def __init__(self, read: Callable[[], pa.Table]):
        self._read = read
        self._arrow: pa.Table | None = None

    def _table(self) -> pa.Table:
        if self._arrow is None:
            self._arrow = self._read()
        return self._arrow

    def pl(self) -> pl.DataFrame:
        return pl.from_arrow(self._table())

    def fetchall(self) -> list[tuple]:
        # Column by column: a result may repeat a column name.
        return list(zip(*(column.to_pylist() for column in self._table().columns), strict=True))

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None


def _reads_catalogue(sql: str) -> bool:
    """Whether ``sql`` (DuckDB dialect) reads ``information_schema``."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    return any(table.db.lower() == "information_schema" for table in tree.find_all(exp.Table))


class SparkConnection:
    """The subset of ``duckdb.DuckDBPyConnection`` the trend functions use, run on Spark.

    ``shipped``: small tables (name -> polars frame) Spark reads beside the lake's, e.g. a
    warehouse table the function reads back. Parameters are ``?`` (a sequence) or ``$name``
    (a mapping), as DuckDB takes them; Spark binds them (never formatted into the SQL).
    """

    def __init__(self, spark, lake_dir, shipped: Mapping[str, pl.DataFrame] | None = None):
        self.days = SparkDays(spark, lake_dir, extra=dict(shipped or {}))
        self._lake_registered = False

    @classmethod
    def of_warehouse(
        cls, spark, lake_dir, warehouse: duckdb.DuckDBPyConnection, ship: Iterable[str] = ()
    ) -> SparkConnection:
        """Spark over ``lake_dir``, with those tables of ``ship`` that ``warehouse`` holds (and
        that are not the lake's own views) shipped along."""
        from ubap_assets.warehouse.introspect import table_exists

        shipped = {
            name: warehouse.execute(f"SELECT * FROM {name}").pl()
            for name in ship
            if name not in lake.LAKE_TABLES and table_exists(warehouse, name)
        }
        return cls(spark, lake_dir, shipped)

    def tables(self) -> list[str]:
        """The names Spark can read: the lake's tables with data and the shipped ones."""
        return sorted(
            name for name in {*lake.LAKE_TABLES, *self.days.extra} if self.days.exists(name)
        )

    def _ask_catalogue(self, sql: str, params) -> pa.Table:
        """``sql`` against an in-memory DuckDB with an empty table per name Spark can read."""
        with duckdb.connect() as con:
            for name in self.tables():
                con.execute(f'CREATE TABLE "{name}" (placeholder INTEGER)')
            return con.execute(sql, params or []).to_arrow_table()

    def execute(
        self, sql: str, params: Sequence[object] | Mapping[str, object] | None = None
    ) -> SparkResult:
        """Run DuckDB SQL: a catalogue question against the names Spark can read, anything
        else on Spark (transpiled)."""
        if _reads_catalogue(sql):
            answer = self._ask_catalogue(sql, params)
            return SparkResult(lambda: answer)
        if not self._lake_registered:  # the lake's days, listed once per connection
            self.days.register_lake()
            self._lake_registered = True
        if isinstance(params, Mapping):
            args: dict[str, object] | list[object] = dict(params)
        else:
            args = list(params or [])
        frame = self.days.spark.sql(transpile(sql), args=args)
        return SparkResult(frame.toArrow)
