"""Metadata helpers shared by the assets: what a person wants to see in the Dagster UI."""

import dagster as dg
import polars as pl


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` rows as a markdown table (or a note that there are none).

    Rendered by polars' own table formatter; a ``|`` inside a text cell is escaped so it cannot
    split the cell.
    """
    if frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    head = frame.head(rows).with_columns(
        pl.col(pl.String).str.replace_all("|", r"\|", literal=True)
    )
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=-1,
        fmt_str_lengths=200,
    ):
        return dg.MetadataValue.md(str(head))
