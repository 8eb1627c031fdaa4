"""The lake: the Spark engine's tables as Hive-partitioned Parquet, one folder per day.

Dagster-free; nothing here needs Java. Layout: ``<lake>/<table>/day=YYYY-MM-DD/*.parquet``
(UBAP_LAKE_DIR, by default ``<data dir>/lake``). The events are written here by the events asset
(polars, a day at a time); Spark writes the day-partitioned tables. The warehouse reads them
through views (``attach_views``), so DuckDB code downstream is the same on both engines.
"""

import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from ubap_assets.core import daily
from ubap_assets.warehouse import tables

PARTITION = "day"
# The lake's tables and the column order their warehouse views show (None: the files' order,
# less the partition column, which the events do not have as a column of their own).
LAKE_TABLES: dict[str, dict[str, str] | None] = {
    tables.EVENTS: None,
    tables.SESSIONS: daily.SESSIONS_COLUMNS,
    tables.USER_DAILY: daily.USER_DAILY_COLUMNS,
    tables.PAGE_DAILY: daily.PAGE_DAILY_COLUMNS,
    tables.USER_PAGE_DAILY: daily.USER_PAGE_DAILY_COLUMNS,
}
# Small warehouse tables the Spark stages read, mirrored whole to <lake>/<table>/<table>.parquet
# whenever the warehouse's copy is written (lib/warehouse_io.py), so no Spark stage opens the
# warehouse file and a backfill's day partitions can run in parallel.
MIRRORED_TABLES: tuple[str, ...] = (tables.PAGES,)
_DAY_FOLDER = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


class LakeConflictError(RuntimeError):
    """The warehouse holds a table where the lake's view should be (built by the other engine)."""


def table_dir(lake: Path, table: str) -> Path:
    return Path(lake) / table


def day_dir(lake: Path, table: str, day: date) -> Path:
    return table_dir(lake, table) / f"{PARTITION}={day.isoformat()}"


def days_present(lake: Path, table: str) -> list[date]:
    """The days of ``table`` that have at least one Parquet file, in order (``table`` "": the
    days directly under ``lake``)."""
    folder = table_dir(lake, table) if table else Path(lake)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _DAY_FOLDER.match(child.name)
        if match and any(child.glob("*.parquet")):
            found.append(date.fromisoformat(match.group(1)))
    return sorted(found)


def has_rows(lake: Path, table: str) -> bool:
    return bool(days_present(lake, table))


def drop_days(lake: Path, table: str, start: date, end: date) -> int:
    """Remove the day folders of [start, end); returns how many went."""
    gone = 0
    for day in days_present(lake, table):
        if start <= day < end:
            shutil.rmtree(day_dir(lake, table, day))
            gone += 1
    return gone


def day_columns(lake: Path, table: str, day: date) -> list[str]:
    """The columns of ``table``'s files for ``day`` (the partition column is the folder's)."""
    first = next(day_dir(lake, table, day).glob("*.parquet"))
    return [name for name in pl.read_parquet_schema(first) if name != PARTITION]


def check_layout(lake: Path, table: str, columns: dict[str, str], start: date, end: date) -> None:
    """Before [start, end) of ``table`` is rewritten with ``columns``: raise OlderLayoutError when
    its days outside the window were written with other columns (an older version's layout),
    which the rewrite would leave beside the new days. A run over every day rebuilds it."""
    outside = [day for day in days_present(lake, table) if not start <= day < end]
    if not outside:
        return
    new = [name for name in columns if name != PARTITION]
    old = day_columns(lake, table, outside[-1])
    if old != new:
        where = f"{len(outside):,} day(s) of Parquet"
        raise daily.OlderLayoutError.of(table, old, new, where, start, end)


def new_staging(lake: Path, table: str) -> Path:
    """A fresh folder beside ``table``'s days to write a window's new days into."""
    return table_dir(lake, table) / f"_staging-{uuid.uuid4().hex}"


def swap_in(lake: Path, table: str, staging: Path, start: date, end: date) -> list[date]:
    """Make the days staged in ``staging`` the days [start, end) of ``table``: the window's old
    day folders go, then each staged one is moved in with a rename (a reader sees a day whole,
    or for that moment not at all), and a day of the window without staged rows ends up empty.
    Returns the days moved in."""
    staged = days_present(staging, "")
    outside = [day for day in staged if not start <= day < end]
    if outside:
        raise ValueError(f"rows for days outside [{start}, {end}): {outside[:3]}")
    drop_days(lake, table, start, end)
    for day in staged:
        (staging / f"{PARTITION}={day.isoformat()}").rename(day_dir(lake, table, day))
    shutil.rmtree(staging, ignore_errors=True)
    return staged


def write_days(
    lake: Path, table: str, frames: Iterable[pl.DataFrame], column: str, start: date, end: date
) -> int:
    """Overwrite the days [start, end) of ``table`` with ``frames``' rows, split by the day of
    ``column`` (swap_in); returns the rows written."""
    staging = new_staging(lake, table)
    written = 0
    try:
        for frame in frames:
            if frame.height == 0:
                continue
            keyed = frame.with_columns(pl.col(column).dt.date().alias("__day"))
            for (day,), rows in keyed.partition_by("__day", as_dict=True).items():
                folder = staging / f"{PARTITION}={day.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                rows.drop("__day").write_parquet(folder / f"part-{uuid.uuid4().hex}.parquet")
                written += rows.height
        swap_in(lake, table, staging, start, end)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def mirror_path(lake: Path, table: str) -> Path:
    return table_dir(lake, table) / f"{table}.parquet"


def write_mirror(lake: Path, table: str, frame: pl.DataFrame) -> None:
    """Replace the lake's copy of a small warehouse table (written aside, then renamed)."""
    target = mirror_path(lake, table)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    frame.write_parquet(aside)
    aside.replace(target)


@contextmanager
def reader(lake: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with a view per lake table: reads the lake without
    opening (or locking) the warehouse file."""
    con = duckdb.connect()
    try:
        attach_views(con, lake)
        yield con
    finally:
        con.close()


def _quoted(text: str) -> str:
    """A SQL string literal (DDL takes no parameters: the view's path is spelled out)."""
    return "'" + text.replace("'", "''") + "'"


def scan_sql(lake: Path, table: str) -> str:
    """DuckDB SQL that reads ``table`` from the lake, columns in the warehouse's order."""
    pattern = str(table_dir(lake, table) / f"{PARTITION}=*" / "*.parquet")
    source = (
        f"read_parquet({_quoted(pattern)}, hive_partitioning = true, "
        f"hive_types = {{'{PARTITION}': DATE}})"
    )
    columns = LAKE_TABLES[table]
    chosen = ", ".join(columns) if columns else f"* EXCLUDE ({PARTITION})"
    return f"SELECT {chosen} FROM {source}"


def attach_views(con: duckdb.DuckDBPyConnection, lake: Path) -> list[str]:
    """(Re)create a view in ``con`` for each lake table with data; returns their names.

    Raises LakeConflictError when the warehouse holds a table of that name: it was built with
    UBAP_ENGINE=duckdb, and the two must not be mixed in one data directory."""
    attached = []
    for table in LAKE_TABLES:
        if not has_rows(lake, table):
            continue
        kind = con.execute(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = ?",
            [table],
        ).fetchone()
        if kind and kind[0] != "VIEW":
            raise LakeConflictError(
                f"the warehouse has a table {table!r} built with UBAP_ENGINE=duckdb, where "
                "UBAP_ENGINE=spark keeps a view of the lake: use another UBAP_DATA_DIR for the "
                "Spark engine (make up-scale uses data/scale) or `make clean` this one"
            )
        con.execute(f"CREATE OR REPLACE VIEW main.{table} AS {scan_sql(lake, table)}")
        attached.append(table)
    return attached
