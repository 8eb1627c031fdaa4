"""Where the warehouse, the serving snapshots and the Dagster instance live on disk.

Dagster-free. Everything sits under one data directory (``UBAP_DATA_DIR``, by default the
repository's ``data/``), so a checkout is self-contained and ``make clean`` is one ``rm``. The
variables are declared in ``ubap_assets.settings``.
"""

from pathlib import Path

from ubap_assets.settings import Settings, current_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _data_dir_of(read: Settings) -> Path:
    return read.data_dir or REPO_ROOT / "data"


def data_dir() -> Path:
    return _data_dir_of(current_settings())


def warehouse_path() -> Path:
    """The DuckDB file the pipeline writes (``UBAP_WAREHOUSE`` overrides it)."""
    read = current_settings()  # read once: the environment is parsed on every call
    return read.warehouse or _data_dir_of(read) / "warehouse.duckdb"


def snapshot_dir() -> Path:
    """Where immutable serving snapshots and the CURRENT pointer are published."""
    read = current_settings()
    return read.snapshot_dir or _data_dir_of(read) / "snapshots"


def inbox_dir() -> Path:
    """The folder the file sensor watches for new event files."""
    read = current_settings()
    return read.inbox_dir or _data_dir_of(read) / "inbox"


def lake_dir() -> Path:
    """Where the Spark engine keeps its Hive-partitioned Parquet tables (``UBAP_LAKE_DIR``)."""
    read = current_settings()
    return read.lake_dir or _data_dir_of(read) / "lake"
