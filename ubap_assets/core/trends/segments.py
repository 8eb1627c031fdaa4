"""The segment ids and names that segment_trends and funnel_segments report under.

Segment ``all`` (every user) is always present; the others need ``user_segments``, which the
trends may run without (its group has not run yet, or the data is too small to segment).
"""

import duckdb
import polars as pl

from ubap_assets.warehouse.introspect import table_exists

ALL_SEGMENT_ID = "all"
ALL_SEGMENT_NAME = "All users"


def segment_names(con: duckdb.DuckDBPyConnection, segments: str) -> pl.DataFrame:
    """segment_id (as text) and its name; an unnamed segment is called 'Segment <id>'."""
    return con.execute(
        f"""SELECT CAST(segment_id AS VARCHAR) AS segment_id,
                   coalesce(any_value(segment_name), 'Segment ' || CAST(segment_id AS VARCHAR))
                       AS segment_name
            FROM {segments} WHERE segment_id IS NOT NULL GROUP BY segment_id"""
    ).pl()


def segment_labels(con: duckdb.DuckDBPyConnection, segments: str | None) -> pl.DataFrame:
    """segment_names plus the 'all' segment; only 'all' when ``segments`` is None."""
    labels = pl.DataFrame({"segment_id": [ALL_SEGMENT_ID], "segment_name": [ALL_SEGMENT_NAME]})
    if segments is not None:
        labels = pl.concat([labels, segment_names(con, segments)])
    return labels


def use_segments(con: duckdb.DuckDBPyConnection, segments: str | None) -> str | None:
    """The segments table when it exists, else None (then only segment 'all' is produced)."""
    return segments if segments is not None and table_exists(con, segments) else None
