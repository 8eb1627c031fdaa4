"""Metadata helpers shared by the assets: what a person wants to see in the Dagster UI.

Numbers are rounded here, once: a float in a preview or a metadata entry shows 4 significant
digits (money: cents), never 0.33951234567 or 359130.96000000025.
"""

from collections.abc import Mapping

import dagster as dg
import polars as pl

SIGNIFICANT_DIGITS = 4
MONEY_COLUMNS = ("revenue", "price")


def rounded_number(value: float, significant: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` to ``significant`` digits, but never fewer than 2 decimals (a large figure
    keeps its integer part: 359130.96, not 359100)."""
    if value != value or value in (float("inf"), float("-inf")) or value == 0:
        return value
    return (
        round(value, 2)
        if abs(value) >= 10 ** (significant - 2)
        else float(f"{value:.{significant}g}")
    )


def number(value: float | int) -> dg.MetadataValue:
    """A metadata number as the UI should show it: an int as is, a float rounded."""
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    return dg.MetadataValue.float(rounded_number(float(value)))


def rounded_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Float columns rounded for display: money columns to cents, the rest to
    ``SIGNIFICANT_DIGITS`` significant digits (at least 2 decimals)."""
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    if not floats:
        return frame
    big = 10.0 ** (SIGNIFICANT_DIGITS - 2)
    return frame.with_columns(
        pl.col(name).round(2)
        if name in MONEY_COLUMNS or name.endswith("_revenue")
        else pl.when(pl.col(name).abs() >= big)
        .then(pl.col(name).round(2))
        .otherwise(pl.col(name).round_sig_figs(SIGNIFICANT_DIGITS))
        .alias(name)
        for name in floats
    )


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` rows as a markdown table (or a note that there are none), floats
    rounded (``rounded_frame``).

    Rendered by polars' own table formatter; a ``|`` inside a text cell is escaped so it cannot
    split the cell.
    """
    if frame.height == 0:
        return dg.MetadataValue.md("_no rows_")
    head = rounded_frame(frame.head(rows)).with_columns(
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
        float_precision=None,
    ):
        return dg.MetadataValue.md(str(head))


def curve_table(points: Mapping[object, float], x: str, y: str) -> dg.MetadataValue:
    """A curve (e.g. silhouette by k) as a two-column markdown table, y rounded: readable in
    the UI where a JSON object is not."""
    lines = [f"| {x} | {y} |", "|---|---|"]
    lines += [f"| {key} | {rounded_number(float(value))} |" for key, value in points.items()]
    return dg.MetadataValue.md("\n".join(lines))
