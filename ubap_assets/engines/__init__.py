"""Where the heavy SQL stages run: the embedded DuckDB warehouse (default) or Apache Spark.

Dagster-free. ``UBAP_ENGINE=duckdb`` keeps every table in the warehouse file. With
``UBAP_ENGINE=spark`` the events and the four day-partitioned tables (sessions, user_daily,
page_daily, user_page_daily) live in the lake as Hive-partitioned Parquet (``lake.py``); Spark
computes them from the same DuckDB SQL, transpiled by SQLGlot (``spark.py``), and the warehouse
sees them as views, so every later stage, the serving snapshot and its readers stay on DuckDB
and never touch the cluster.
"""

from ubap_assets.settings import current_settings

DUCKDB = "duckdb"
SPARK = "spark"


def engine_name() -> str:
    """The engine of this process's settings (``UBAP_ENGINE``)."""
    return current_settings().engine


def uses_spark() -> bool:
    return engine_name() == SPARK
