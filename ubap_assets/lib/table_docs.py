"""Column descriptions from the table contract's documentation, for the Dagster UI.

``docs/tables/*.md`` describe every table once: a ``## <table> — ...`` section per table with a
``| column | type | notes |`` markdown table (a cell may name several columns, ``lower, upper``).
A cell may also name a family of columns with a placeholder between asterisks,
``*metric*_ci_low``. A section that shares another table's columns says so in a sentence
naming it in backticks:
"Same columns as `daily_trends` ...", "the columns of `funnel_daily` ...", "Rows of
`anomaly_history` ..."; its own table adds or overrides columns. The files are parsed once per
process; every asset's ``dagster/column_schema`` takes its descriptions from here, so the UI
and the docs cannot disagree.
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
_SHARED = re.compile(r"(?:columns (?:as in|as|of)|[Rr]ows of) `([a-z][a-z0-9_]*)`")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_FAMILY = re.compile(r"^[a-z0-9_]*(\*[a-z_ ]+\*[a-z0-9_]*)+$")  # e.g. *metric*_ci_low
_PLACEHOLDER = re.compile(r"\*[a-z_ ]+\*")
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
    families: dict[str, ColumnDoc] = field(default_factory=dict)  # regex -> doc


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
            elif _FAMILY.match(name):
                pattern = "".join(
                    ".+" if _PLACEHOLDER.fullmatch(part) else re.escape(part)
                    for part in re.split(f"({_PLACEHOLDER.pattern})", name)
                )
                current.families[pattern] = ColumnDoc(name, kind, cells[-1])
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
            known.families.update(section.families)
            known.shares = known.shares or section.shares
    return sections


def _chain(table: str, directory: Path) -> list[_Section]:
    """The table's section, then the sections it shares columns with."""
    sections = _all_sections(directory)
    chain: list[_Section] = []
    name: str | None = table
    while name in sections and sections[name] not in chain:
        chain.append(sections[name])
        name = sections[name].shares
    return chain


def column_docs(table: str, directory: Path = TABLE_DOCS_DIR) -> dict[str, ColumnDoc]:
    """Every column of ``table`` the docs name, shared columns included ({} when undocumented;
    families such as ``*metric*_ci_low`` are matched by ``column_doc``)."""
    merged: dict[str, ColumnDoc] = {}
    for section in reversed(_chain(table, directory)):  # own rows override shared ones
        merged.update(section.columns)
    return merged


def column_doc(table: str, column: str, directory: Path = TABLE_DOCS_DIR) -> ColumnDoc | None:
    """The docs of one column: by its name, else by a family that matches it."""
    named = column_docs(table, directory).get(column)
    if named is not None:
        return named
    for section in _chain(table, directory):
        for pattern, doc in section.families.items():
            if re.fullmatch(pattern, column):
                return ColumnDoc(column, doc.type, doc.description)
    return None


def is_documented(table: str, directory: Path = TABLE_DOCS_DIR) -> bool:
    return any(s.columns or s.families for s in _chain(table, directory))


def undescribed_columns(
    table: str, columns: list[str], directory: Path = TABLE_DOCS_DIR
) -> list[str]:
    """The columns of ``columns`` the docs give no description for."""
    return [
        c for c in columns if not (doc := column_doc(table, c, directory)) or not doc.description
    ]


def column_schema(
    table: str, types: Mapping[str, str] | None = None, directory: Path = TABLE_DOCS_DIR
) -> dg.TableSchema | None:
    """``dagster/column_schema`` for ``table``: the given columns and types (a written frame's)
    with the docs' descriptions, or without ``types`` the documented columns and types.
    None when neither names a column."""
    if types is None:
        types = {name: doc.type for name, doc in column_docs(table, directory).items()}
    if not types:
        return None
    columns = []
    for name, kind in types.items():
        doc = column_doc(table, name, directory)
        description = doc.description if doc is not None and doc.description else None
        columns.append(dg.TableColumn(name, kind or "unknown", description=description))
    return dg.TableSchema(columns=columns)
