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
