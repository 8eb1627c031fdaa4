"""Column descriptions from the table contract's documentation, for the Dagster UI.

``docs/tables/*.md`` describe every table once: a ``## <table> — ...`` section per table with a
``| column | type | notes |`` markdown table (a cell may name several columns, ``lower, upper``).
A section that shares another table's columns says so in a sentence naming it in backticks:
"Same columns as `daily_trends` ...", "the columns of `funnel_daily` ..."; its own table adds
or overrides columns. The files are parsed once per process; every asset's
``dagster/column_schema`` takes its descriptions from here, so the UI and the docs cannot
disagree.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import dagster as dg

from ubap_assets.warehouse.paths import REPO_ROOT

TABLE_DOCS_DIR = REPO_ROOT / "docs" / "tables"

_SECTION = re.compile(r"^##\s+`?([a-z][a-z0-9_]*)`?(?:\s|$)")
_SHARED = re.compile(r"columns (?:as in|as|of) `([a-z][a-z0-9_]*)`")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SEPARATOR = re.compile(r"^[\s|:-]+$")


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    type: str  # as the docs spell it ("DOUBLE"); "" where the table gives none
    description: str  # "" where the notes cell is empty


@dataclass
class _Section:
    columns: dict[str, ColumnDoc]
    shares: str | None = None  # the table whose columns this one shares
    prose: list[str] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace(r"\|", "|") for cell in _CELL_SPLIT.split(inner)]


def parse_table_docs(text: str) -> dict[str, _Section]:
    """The sections of one markdown file, by table name (sections that name no table, such
    as '## Configuration', are left out)."""
    sections: dict[str, _Section] = {}
    current: _Section | None = None
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if line.startswith("## "):
            current = sections.setdefault(heading.group(1), _Section({})) if heading else None
            continue
        if current is None:
            continue
        if not line.lstrip().startswith("|"):
            current.prose.append(line.strip())
            continue
        cells = _cells(line)
        if len(cells) < 2 or _SEPARATOR.match(line) or cells[0].lower() == "column":
            continue
        kind = cells[1] if len(cells) >= 3 else ""
        for name in (n.strip().strip("`") for n in cells[0].split(",")):
            if _NAME.match(name):
                current.columns[name] = ColumnDoc(name, kind, cells[-1])
    for section in sections.values():  # a sentence may wrap: search the joined prose
        shared = _SHARED.search(" ".join(section.prose))
        section.shares = shared.group(1) if shared else None
    return sections


@cache
def _all_sections(directory: Path) -> dict[str, _Section]:
    sections: dict[str, _Section] = {}
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        for table, section in parse_table_docs(path.read_text(encoding="utf-8")).items():
            known = sections.setdefault(table, _Section({}))
            known.columns.update(section.columns)
            known.shares = known.shares or section.shares
    return sections


def column_docs(table: str, directory: Path = TABLE_DOCS_DIR) -> dict[str, ColumnDoc]:
    """Every documented column of ``table``, shared columns included ({} when undocumented)."""
    sections = _all_sections(directory)
    chain: list[_Section] = []
    name: str | None = table
    while name in sections and sections[name] not in chain:
        chain.append(sections[name])
        name = sections[name].shares
    merged: dict[str, ColumnDoc] = {}
    for section in reversed(chain):  # the table's own rows override the shared ones
        merged.update(section.columns)
    return merged


def undescribed_columns(
    table: str, columns: list[str], directory: Path = TABLE_DOCS_DIR
) -> list[str]:
    """The columns of ``columns`` the docs give no description for."""
    docs = column_docs(table, directory)
    return [c for c in columns if not (c in docs and docs[c].description)]


def column_schema(
    table: str, types: Mapping[str, str] | None = None, directory: Path = TABLE_DOCS_DIR
) -> dg.TableSchema | None:
    """``dagster/column_schema`` for ``table``: the given columns and types (a written frame's)
    with the docs' descriptions, or without ``types`` the documented columns and types.
    None when neither names a column."""
    docs = column_docs(table, directory)
    if types is None:
        types = {name: doc.type for name, doc in docs.items()}
    if not types:
        return None
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                kind or "unknown",
                description=docs[name].description if name in docs else None,
            )
            for name, kind in types.items()
        ]
    )
