"""Two warehouses compared table by table, as the data say them (the incremental and the
engine equality tests): every table sorted, the columns that name a run left out, run ids in
texts masked, floats (and numbers inside JSON columns) within 1e-9 relative."""

import json
import re
from pathlib import Path

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

# Columns that name the run that wrote a row, not what the data say; run ids quoted in a text.
RUN_COLUMNS = {"model_version", "created_at", "artifact_path", "run_id", "generated_at"}
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _rounded(value):
    """JSON numbers to 12 significant digits (a float's last bits may differ, as in columns)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Text as the data say it: run ids masked, JSON numbers rounded like float columns."""
    texts = [c for c, kind in frame.schema.items() if kind == pl.String]
    return frame.with_columns(
        pl.col(c).map_elements(
            (lambda t: json.dumps(_rounded(json.loads(t)), sort_keys=True))
            if c.endswith("_json")
            else (lambda t: RUN_ID.sub("<run>", t)),
            return_dtype=pl.String,
        )
        for c in texts
    )


def ordered(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    columns = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        if name not in RUN_COLUMNS
    ]
    selected = ", ".join(f'"{c}"' for c in columns)
    return con.execute(f'SELECT {selected} FROM main."{table}" ORDER BY ALL').pl()


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {name for (name,) in rows}


def differences(full: Path, incremental: Path) -> dict[str, str]:
    """Each table whose rows differ (beyond 1e-9 relative on floats), with the first difference."""
    found: dict[str, str] = {}
    with (
        duckdb.connect(str(full), read_only=True) as a,
        duckdb.connect(str(incremental), read_only=True) as b,
    ):
        names = tables(a)
        if names != tables(b):
            found["(tables)"] = (
                f"only in full: {names - tables(b)}; only nightly: {tables(b) - names}"
            )
        for table in sorted(names & tables(b)):
            try:
                assert_frame_equal(
                    comparable(ordered(a, table)),
                    comparable(ordered(b, table)),
                    check_exact=False,
                    rel_tol=1e-9,
                    abs_tol=1e-12,
                )
            except AssertionError as err:
                found[table] = str(err).splitlines()[0][:300]
    return found
