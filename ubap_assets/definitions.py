"""The ubap code location: everything under defs/, plus cross-cutting policy."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # One DuckDB file accepts one writer: run the steps of a run in one process, in order.
    return dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))
