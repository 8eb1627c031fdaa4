"""The scale-out path's operations: the PostgreSQL cluster behind the Dagster instance.

Dagster-free apart from the instance template (``dagster_postgres.yaml``), which ``make
up-scale`` copies into ``$DAGSTER_HOME``. The Spark engine itself lives in ``ubap_assets.engines``.
"""
