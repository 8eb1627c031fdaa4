"""Where the warehouse, the serving snapshots and the Dagster instance live on disk.

Dagster-free. Everything sits under one data directory (``UBAP_DATA_DIR``, by default the
repository's ``data/``), so a checkout is self-contained and ``make clean`` is one ``rm``.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("UBAP_DATA_DIR") or REPO_ROOT / "data")


def warehouse_path() -> Path:
    """The DuckDB file the pipeline writes (``UBAP_WAREHOUSE`` overrides it)."""
    return Path(os.environ.get("UBAP_WAREHOUSE") or data_dir() / "warehouse.duckdb")


def snapshot_dir() -> Path:
    """Where immutable serving snapshots and the CURRENT pointer are published."""
    return Path(os.environ.get("UBAP_SNAPSHOT_DIR") or data_dir() / "snapshots")


def inbox_dir() -> Path:
    """The folder the file sensor watches for new event files."""
    return Path(os.environ.get("UBAP_INBOX_DIR") or data_dir() / "inbox")
