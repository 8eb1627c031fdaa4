"""What a DuckDB connection holds: questions about the catalogue, not about the data.

Dagster-free; the pipeline's stages ask these before reading a table another stage may not have
written yet (segments, pages, profiles).
"""

import duckdb


def warehouse_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables in the main schema of ``con`` (a warehouse or a snapshot)."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {name for (name,) in rows}


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table (or view) called ``name`` exists in any schema of ``con``."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def table_columns(
    con: duckdb.DuckDBPyConnection, table: str, catalog: str | None = None
) -> list[str]:
    """The columns of the table or view ``table`` in the main schema of ``catalog`` (None: the
    connection's own database, not an attached one), in order; [] when there is none.
    (``duckdb_columns()`` answers in half the time of ``information_schema``.)"""
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() "
        "WHERE database_name = coalesce(?, current_database()) "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [catalog, table],
    ).fetchall()
    return [name for (name,) in rows]
