"""The ubap code location: everything under defs/, plus cross-cutting policy."""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from ubap_assets.lib.table_docs import column_schema
from ubap_assets.warehouse import tables as t

SERVING_SNAPSHOT = dg.AssetKey("serving_snapshot")


def with_documented_columns(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The asset's column schema from docs/tables/ (names, types, descriptions), shown in the
    UI before the first materialization; each materialization's schema (the written frame's
    types) carries the same descriptions (see lib/warehouse_io.py)."""
    schema = column_schema(spec.key.path[-1])
    if schema is None or "dagster/column_schema" in spec.metadata:
        return spec
    return spec.merge_attributes(metadata={"dagster/column_schema": schema})


def terminal_serving_tables(children: Mapping[dg.AssetKey, set[dg.AssetKey]]) -> list[dg.AssetKey]:
    """The serving tables from which no other serving table descends (``children``: each
    asset's direct downstream assets).

    The snapshot copies every table of SERVING_TABLES, but an edge from each of the 31 buries
    the lineage under edges into one node. Depending on the terminal ones keeps every serving
    table upstream of the snapshot (so a run still orders it after all of them, and a failed
    step still skips it) with far fewer edges; the snapshot's metadata lists what it copies.
    """
    present = {dg.AssetKey(name) for name in t.SERVING_TABLES} & set(children)
    return [key for key in _in_order(present) if not (_descendants(key, children) & present)]


def _descendants(key: dg.AssetKey, children: Mapping[dg.AssetKey, set[dg.AssetKey]]) -> set:
    seen: set[dg.AssetKey] = set()
    stack = [c for c in children[key] if c != SERVING_SNAPSHOT]
    while stack:
        node = stack.pop()
        if node not in seen and node != SERVING_SNAPSHOT:
            seen.add(node)
            stack.extend(children.get(node, ()))
    return seen


def _in_order(keys: set[dg.AssetKey]) -> list[dg.AssetKey]:
    return [dg.AssetKey(name) for name in t.SERVING_TABLES if dg.AssetKey(name) in keys]


def _serving_table_list() -> dg.MetadataValue:
    return dg.MetadataValue.md(
        "Copies every serving table (the lineage draws only the terminal ones):\n\n"
        + "\n".join(f"- `{name}`" for name in t.SERVING_TABLES)
    )


def map_specs(definitions: dg.Definitions, func) -> dg.Definitions:
    """``definitions`` with ``func`` applied to every asset spec (the public, stable
    ``dg.map_asset_specs``; ``Definitions.map_asset_specs`` is a preview API)."""
    return dg.Definitions(
        assets=dg.map_asset_specs(func, definitions.assets or []),
        schedules=definitions.schedules,
        sensors=definitions.sensors,
        jobs=definitions.jobs,
        resources=definitions.resources,
        executor=definitions.executor,
        loggers=definitions.loggers,
        asset_checks=definitions.asset_checks,
        metadata=definitions.metadata,
        component_tree=definitions.component_tree,
    )


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # One DuckDB file accepts one writer: run the steps of a run in one process, in order.
    merged = dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))
    graph = merged.resolve_asset_graph()
    children = {key: graph.get(key).child_keys for key in graph.get_all_asset_keys()}
    terminal = terminal_serving_tables(children)

    def document(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key == SERVING_SNAPSHOT:
            spec = spec.replace_attributes(deps=terminal).merge_attributes(
                metadata={"copies": _serving_table_list()}
            )
        return with_documented_columns(spec)

    return map_specs(merged, document)
