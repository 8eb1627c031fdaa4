"""Where the heavy SQL stages run: the embedded DuckDB warehouse (default) or Apache Spark.

Dagster-free. ``UBAP_ENGINE=duckdb`` keeps every table in the warehouse file. With
``UBAP_ENGINE=spark`` the events and the four day-partitioned tables (sessions, user_daily,
page_daily, user_page_daily) live in the lake as Hive-partitioned Parquet (``lake.py``); Spark
computes them, and the trend stages' small results, from the same DuckDB SQL transpiled by
SQLGlot (``spark.py``, ``spark_connection.py``). The warehouse sees the lake's tables as views,
so every later stage, the serving snapshot and its readers stay on DuckDB and never touch the
cluster.
"""

from ubap_assets.settings import current_settings

SPARK = "spark"


def uses_spark() -> bool:
    """Whether this process's settings choose the Spark engine (``UBAP_ENGINE``)."""
    return current_settings().engine == SPARK
