"""The IO manager that stores polars frames as DuckDB tables, one table per asset.

dagster-duckdb-polars inserts by column position into an existing table, in a separate
statement from its delete; a renamed column breaks the next run and a crash between the two
leaves a half-written table. This one replaces a whole table in one statement and overwrites
a partition's time window inside one transaction, so a table is always either the old or the
new version, and re-materializing a partition is idempotent.
"""

from datetime import datetime, timezone

import dagster as dg
import duckdb
import polars as pl


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def _table_metadata(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> dict:
    total = con.execute(f'SELECT count(*) FROM main."{table}"').fetchone()[0]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(total)),
        "rows_written": dg.MetadataValue.int(frame.height),
        "table": dg.MetadataValue.text(f"main.{table}"),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, str(t)) for n, t in frame.schema.items()]
        ),
    }


class DuckDBWarehouseIOManager(dg.ConfigurableIOManager):
    """Writes each asset's polars frame to ``main.<asset name>`` in the warehouse file."""

    database: str  # path of the DuckDB warehouse file

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(self.database)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame")
        table = context.asset_key.path[-1]
        frame = obj  # noqa: F841 - read by DuckDB's replacement scan below
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if context.has_asset_partitions:
                    column = context.definition_metadata.get("partition_expr")
                    if not column:
                        raise dg.DagsterInvariantViolationError(
                            f"partitioned asset {table} needs 'partition_expr' metadata"
                        )
                    window = context.asset_partitions_time_window
                    con.execute(f'CREATE TABLE IF NOT EXISTS main."{table}" AS '
                                "SELECT * FROM frame LIMIT 0")
                    con.execute(
                        f'DELETE FROM main."{table}" WHERE "{column}" >= ? AND "{column}" < ?',
                        [_naive_utc(window.start), _naive_utc(window.end)],
                    )
                    con.execute(f'INSERT INTO main."{table}" BY NAME SELECT * FROM frame')
                else:
                    con.execute(f'CREATE OR REPLACE TABLE main."{table}" AS SELECT * FROM frame')
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            context.add_output_metadata(_table_metadata(con, table, obj))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = context.upstream_output.asset_key.path[-1]
        with self._connect() as con:
            return con.execute(f'SELECT * FROM main."{table}"').pl()
