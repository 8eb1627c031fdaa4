"""Metadata helpers shared by the assets: what a person wants to see in the Dagster UI."""

import dagster as dg
import polars as pl


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` rows as a markdown table (or a note that there are none)."""
    if frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    return dg.MetadataValue.md(frame.head(rows).to_pandas().to_markdown(index=False))
