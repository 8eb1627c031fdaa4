"""Column descriptions from docs/tables/ reach the Dagster UI, for every served column; the
serving snapshot's lineage stays complete with a handful of edges; metadata numbers rounded."""

import dagster as dg
import duckdb
import polars as pl
import pytest

from ubap_assets.definitions import SERVING_SNAPSHOT, defs, terminal_serving_tables
from ubap_assets.lib.metadata import curve_table, markdown_preview, number, rounded_number
from ubap_assets.lib.table_docs import (
    column_doc,
    column_docs,
    column_schema,
    is_documented,
    parse_table_docs,
    undescribed_columns,
)
from ubap_assets.warehouse import tables

SAMPLE = """
# Some tables

## first_table — one row per thing

| column | type | notes |
|---|---|---|
| id | VARCHAR | the thing |
| lower, upper | DOUBLE | the range, by \\|score\\| |
| empty | BIGINT | |
| *metric*_ci_low, *metric*_ci_high | DOUBLE | a bootstrap interval |

## `second_table`
Same columns as
`first_table`, plus one of its own.

| column | type | notes |
|---|---|---|
| id | VARCHAR | overridden |
| extra | DATE | its own |

## Configuration

| column | type | notes |
|---|---|---|
| not_a_table | INT | ignored |
"""


@pytest.fixture
def docs_dir(tmp_path):
    (tmp_path / "sample.md").write_text(SAMPLE)
    return tmp_path


def test_sections_cells_and_shared_columns_are_parsed(docs_dir):
    sections = parse_table_docs(SAMPLE)
    assert set(sections) == {"first_table", "second_table"}
    first = column_docs("first_table", docs_dir)
    assert first["lower"].description == first["upper"].description == "the range, by |score|"
    assert first["lower"].type == "DOUBLE"
    second = column_docs("second_table", docs_dir)
    assert second["id"].description == "overridden"
    assert second["extra"].description == "its own"
    assert second["upper"].description == "the range, by |score|"  # shared, across a line break
    assert undescribed_columns("second_table", ["id", "empty", "nowhere"], docs_dir) == [
        "empty",
        "nowhere",
    ]
    assert column_docs("no_such_table", docs_dir) == {}
    family = column_doc("second_table", "roc_auc_ci_high", docs_dir)
    assert (family.name, family.description) == ("roc_auc_ci_high", "a bootstrap interval")
    assert column_doc("first_table", "ci_high", docs_dir) is None  # the placeholder is not empty


def test_column_schema_keeps_the_written_types_and_adds_descriptions(docs_dir):
    schema = column_schema("first_table", {"id": "String", "new": "Int64"}, docs_dir)
    assert [(c.name, c.type, c.description) for c in schema.columns] == [
        ("id", "String", "the thing"),
        ("new", "Int64", None),
    ]
    documented = column_schema("first_table", directory=docs_dir)
    assert [c.name for c in documented.columns] == ["id", "lower", "upper", "empty"]
    assert column_schema("no_such_table", directory=docs_dir) is None


def test_every_served_table_has_a_docs_section():
    missing = [name for name in tables.SERVING_TABLES if not is_documented(name)]
    assert not missing, f"no section in docs/tables/*.md for: {missing}"


@pytest.mark.slow
def test_every_served_column_is_described(materialized_graph):
    """What the pipeline really writes: each served table's columns have a description."""
    warehouse = materialized_graph.data_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    missing = {
        table: undescribed_columns(table, columns.get(table, [])) for table in tables.SERVING_TABLES
    }
    missing = {table: cols for table, cols in missing.items() if cols}
    assert not missing, f"describe these columns in docs/tables/*.md: {missing}"


@pytest.mark.slow
def test_materializations_carry_the_described_column_schema(materialized_graph):
    events = materialized_graph.result.get_asset_materialization_events()
    schemas = {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/column_schema"]
        for e in events
        if "dagster/column_schema" in e.materialization.metadata
    }
    assert tables.USER_FEATURES in schemas and tables.SEGMENT_PROFILES in schemas
    for name in (tables.USER_FEATURES, tables.SEGMENT_PROFILES):
        columns = schemas[name].schema.columns
        assert all(c.description for c in columns), [c.name for c in columns]


def test_every_documented_asset_shows_its_columns_before_materializing():
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        if column_docs(name):
            schema = graph.get(key).metadata.get("dagster/column_schema")
            assert schema is not None, name
            assert any(c.description for c in schema.columns), name
    for name in tables.SERVING_TABLES:
        assert "dagster/column_schema" in graph.get(dg.AssetKey(name)).metadata, name


def test_serving_snapshot_depends_on_the_terminal_tables_and_still_follows_all():
    graph = defs().resolve_asset_graph()
    parents = graph.get(SERVING_SNAPSHOT).parent_keys
    assert len(parents) < len(tables.SERVING_TABLES) / 2
    ancestors: set[dg.AssetKey] = set()
    stack = list(parents)
    while stack:
        key = stack.pop()
        if key not in ancestors:
            ancestors.add(key)
            stack.extend(graph.get(key).parent_keys)
    assert {dg.AssetKey(n) for n in tables.SERVING_TABLES} <= ancestors
    served = {dg.AssetKey(n) for n in tables.SERVING_TABLES}
    for key in parents:  # no dependency is implied by another
        below = {c for c in graph.get(key).child_keys if c != SERVING_SNAPSHOT}
        assert not below & served, key.to_user_string()


def test_terminal_serving_tables_on_a_small_graph():
    events, trends, rejects = (dg.AssetKey(n) for n in ("events", "daily_trends", "event_rejects"))
    children = {
        events: {trends, SERVING_SNAPSHOT},
        trends: {SERVING_SNAPSHOT},
        rejects: {SERVING_SNAPSHOT},
        SERVING_SNAPSHOT: set(),
    }
    assert terminal_serving_tables(children) == [rejects, trends]


def test_metadata_numbers_are_rounded():
    frame = pl.DataFrame(
        {"rate": [0.33951234567, 12345.6789], "revenue": [359130.96000000025, 2.0], "n": [1, 2]}
    )
    text = markdown_preview(frame).value
    assert "0.3395 " in text and "12345.68" in text and "359130.96 " in text
    assert "0.33951" not in text and "0000000" not in text
    assert rounded_number(0.123456) == 0.1235 and rounded_number(359130.96000000025) == 359130.96
    assert number(0.123456789).value == 0.1235 and number(7).value == 7
    assert curve_table({2: 0.31234, 3: 0.4}, "k", "silhouette").value.splitlines()[2] == (
        "| 2 | 0.3123 |"
    )
