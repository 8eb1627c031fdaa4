"""What a DuckDB connection holds: questions about the catalogue, not about the data.

Dagster-free; the pipeline's stages ask these before reading a table another stage may not have
written yet (segments, pages, profiles).
"""

import duckdb


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table (or view) called ``name`` exists in any schema of ``con``."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])
