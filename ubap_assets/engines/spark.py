"""The Spark engine: the day tables computed by Apache Spark from the lake's Parquet.

Dagster-free. ``spark_session()`` connects to a cluster through Spark Connect
(``UBAP_SPARK_REMOTE=sc://host:port``) or starts a local Spark (``UBAP_SPARK_MASTER``, by
default ``local[2]``; it needs Java 17). ``SparkDays`` implements core/daily.py's ``DayTables``:
the builders' DuckDB SQL is transpiled to Spark SQL by SQLGlot (one copy of the logic), runs
over the lake's tables, and each window of days is written to a staging folder and swapped in
(engines/lake.py), so re-running a day is idempotent and a reader sees whole days.

Times are TIMESTAMP_NTZ in UTC on both sides: the warehouse's TIMESTAMP columns round-trip
through Parquet unchanged.
"""

import functools
import os
import shutil
import socket
from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl

from ubap_assets.engines import lake
from ubap_assets.settings import current_settings

# DuckDB column types of the day tables and their Spark SQL names.
_SPARK_TYPES = {
    "VARCHAR": "STRING",
    "BIGINT": "BIGINT",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP_NTZ",
}


class SparkUnavailableError(RuntimeError):
    """Spark cannot be started or reached; the message names the setting and the fix."""


def transpile(sql: str) -> str:
    """DuckDB SQL as Spark SQL (``?`` parameters stay positional)."""
    import sqlglot

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


def _connect_address(url: str) -> tuple[str, int]:
    """Host and port of a Spark Connect URL (sc://host[:port][/;options]; 15002 by default)."""
    where = urlsplit(url.replace("sc://", "http://", 1))
    return where.hostname or "", where.port or 15002


def _check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at the Spark Connect address (the client would retry for
    minutes before saying so)."""
    host, port = _connect_address(url)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise SparkUnavailableError(
            f"no Spark Connect server answers at {host}:{port} (UBAP_SPARK_REMOTE={url}): {err}. "
            "Start it (`$SPARK_HOME/sbin/start-connect-server.sh`), fix UBAP_SPARK_REMOTE, or "
            "unset it for a local Spark"
        ) from err


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(shutil.which("java") or (home and Path(home, "bin", "java").exists()))


def _builder(remote: str, master: str):
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise SparkUnavailableError(
            "UBAP_ENGINE=spark needs pyspark: run `make install-scale` (pip install '.[scale]'), "
            "or unset UBAP_ENGINE for the embedded DuckDB engine"
        ) from err
    builder = SparkSession.builder.appName("ubap")
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    }.items():
        builder = builder.config(key, value)
    if remote:
        _check_reachable(remote)
        return builder.remote(remote)
    if not _java_found():
        raise SparkUnavailableError(
            "UBAP_ENGINE=spark with a local Spark needs Java 17: run `make install-scale` "
            "(Debian: apt-get install openjdk-17-jre-headless), set UBAP_SPARK_REMOTE to a "
            "Spark Connect server, or unset UBAP_ENGINE for the embedded DuckDB engine"
        )
    return (
        builder.master(master)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", os.environ.get("UBAP_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.sql.adaptive.enabled", "true")
    )


@functools.cache
def _session(remote: str, master: str):
    builder = _builder(remote, master)
    try:
        return builder.getOrCreate()
    except ImportError as err:  # pyspark's PySparkImportError: the Connect client's packages
        raise SparkUnavailableError(
            f"the Spark Connect client is incomplete ({err}): run `make install-scale` "
            "(pip install '.[scale]', which brings pyspark[connect])"
        ) from err
    except Exception as err:  # py4j / gRPC errors: say which setting points where
        where = (
            f"the Spark Connect server at {remote} (UBAP_SPARK_REMOTE)"
            if remote
            else f"a local Spark ({master}, UBAP_SPARK_MASTER)"
        )
        raise SparkUnavailableError(
            f"could not start or reach {where}: {err}. Start the server "
            "(`$SPARK_HOME/sbin/start-connect-server.sh`) or fix the setting; unset UBAP_ENGINE "
            "for the embedded DuckDB engine"
        ) from err


def spark_session():
    """The process's Spark session for the current settings (started once)."""
    settings = current_settings()
    return _session(settings.spark_remote, settings.spark_master)


class SparkDays:
    """core/daily.py's DayTables on Spark, over the lake's tables and its mirrors of small
    warehouse tables (the page catalogue); ``extra`` (name -> polars frame) adds others."""

    def __init__(self, spark, lake_dir: Path, extra: dict[str, pl.DataFrame] | None = None):
        self.spark = spark
        self.lake_dir = Path(lake_dir)
        self.extra = dict(extra or {})
        for name, frame in self.extra.items():
            self.spark.createDataFrame(frame.to_arrow()).createOrReplaceTempView(name)

    def register_lake(self) -> None:
        """A temporary view per lake table with data, listed afresh (new days appear)."""
        for table in lake.LAKE_TABLES:
            if not lake.has_rows(self.lake_dir, table):
                continue
            frame = self.spark.read.parquet(str(lake.table_dir(self.lake_dir, table)))
            if lake.LAKE_TABLES[table] is None:
                frame = frame.drop(lake.PARTITION)
            frame.createOrReplaceTempView(table)
        for table in lake.MIRRORED_TABLES:
            if table not in self.extra and lake.mirror_path(self.lake_dir, table).exists():
                path = str(lake.mirror_path(self.lake_dir, table))
                self.spark.read.parquet(path).createOrReplaceTempView(table)

    def sql(self, duckdb_sql: str, params: list | None = None):
        """A Spark DataFrame of DuckDB SQL over the lake's tables."""
        self.register_lake()
        return self.spark.sql(transpile(duckdb_sql), args=list(params or []))

    def exists(self, table: str) -> bool:
        if table in self.extra:
            return True
        if table in lake.MIRRORED_TABLES:
            return lake.mirror_path(self.lake_dir, table).exists()
        return table in lake.LAKE_TABLES and lake.has_rows(self.lake_dir, table)

    def one(self, sql: str, params: list | None = None) -> tuple:
        rows = self.sql(sql, params).collect()
        return tuple(rows[0]) if rows else ()

    def replace_days(
        self,
        table: str,
        columns: dict[str, str],
        start: date,
        end: date,
        select: str,
        params_of: Callable[[date, date], list],
    ) -> int:
        """Compute ``select`` over [start, end) in one Spark job, write it into a staging
        folder partitioned by day and swap the window's days in; returns the rows written.
        Days outside the window in an older layout stop it first (lake.check_layout)."""
        lake.check_layout(self.lake_dir, table, columns, start, end)
        frame = self.sql(select, params_of(start, end)).selectExpr(
            *(f"CAST({name} AS {_SPARK_TYPES[kind]}) AS {name}" for name, kind in columns.items())
        )
        staging = lake.new_staging(self.lake_dir, table)
        try:
            frame.write.mode("overwrite").partitionBy(lake.PARTITION).parquet(str(staging))
            written = (
                self.spark.read.parquet(str(staging)).count()
                if lake.days_present(staging, "")
                else 0
            )
            lake.swap_in(self.lake_dir, table, staging, start, end)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return written
