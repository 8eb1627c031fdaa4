"""Finding and reading event files: CSV (any of , ; tab |), Parquet, JSON Lines, JSON arrays."""

import csv
import glob
import io
import json
from pathlib import Path

import polars as pl

from ubap_assets.core.ingest.errors import IngestError

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024


def _wanted(path: Path) -> bool:
    # Hidden files and half-written uploads (.part, .tmp, ~) are not event files.
    return (
        path.is_file() and path.suffix.lower() in SUFFIXES and not path.name.startswith((".", "~"))
    )


def list_files(source: str) -> list[str]:
    """Event files of a directory (recursively), a glob pattern or a single file, sorted."""
    path = Path(source).expanduser()
    if any(ch in source for ch in "*?["):
        found = [Path(p) for p in glob.glob(str(path), recursive=True)]
    elif path.is_dir():
        found = list(path.rglob("*"))
    elif path.is_file():
        found = [path]
    else:
        found = []
    return sorted(str(p) for p in found if _wanted(p))


def is_blank(path: str) -> bool:
    """An empty file, or one holding nothing but whitespace and a byte-order mark."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    return not head.decode("utf-8", errors="replace").lstrip("\ufeff").strip()


def sniff_delimiter(path: str) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = head.splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut off
    lines = [ln for ln in lines[:50] if ln.strip()]
    best, best_score = ("\t" if path.lower().endswith(".tsv") else ","), (0, 0)
    for delim in DELIMITERS:
        counts = [len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delim)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(c == counts[0] for c in counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delim, score
    return best


def flatten(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Nested struct columns become dotted columns (``context`` -> ``context.page.url``)."""
    schema = lf.collect_schema()
    if not any(isinstance(dt, pl.Struct) for dt in schema.values()):
        return lf

    exprs: list[pl.Expr] = []

    def walk(expr: pl.Expr, name: str, dtype: pl.DataType) -> None:
        if isinstance(dtype, pl.Struct):
            for field in dtype.fields:
                walk(expr.struct.field(field.name), f"{name}.{field.name}", field.dtype)
        else:
            exprs.append(expr.alias(name))

    for name, dtype in schema.items():
        walk(pl.col(name), name, dtype)
    return lf.select(exprs)


def expand_lists(frame: pl.DataFrame, index: str = "__row") -> pl.DataFrame:
    """Lists of structs become columns: key/value lists (GA4 ``event_params``) one column per
    key (``event_params.ga_session_id``, values as text); other lists (``items``) their first
    element, which ``flatten`` then spreads into ``items.item_id``..."""
    for name, dtype in frame.schema.items():
        if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
            continue
        fields = {f.name: f.dtype for f in dtype.inner.fields}
        if "key" not in fields or "value" not in fields:
            frame = frame.with_columns(pl.col(name).list.first())
            continue
        value = pl.col("value")
        if isinstance(fields["value"], pl.Struct):
            parts = [f.name for f in fields["value"].fields]
            value = pl.coalesce([value.struct.field(f).cast(pl.String) for f in parts])
        long = (
            frame.select(index, pl.col(name))
            .explode(name)
            .unnest(name)
            .select(index, pl.col("key").cast(pl.String), value.cast(pl.String).alias("__value"))
            .filter(pl.col("key").is_not_null())
        )
        wide = long.pivot(on="key", index=index, values="__value", aggregate_function="first")
        wide = wide.rename({c: f"{name}.{c}" for c in wide.columns if c != index})
        frame = frame.drop(name).join(wide, on=index, how="left", maintain_order="left")
    return frame


def _json_kind(path: str) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    return "array" if head.startswith("[") else "lines"


def _read_json_lines(path: str) -> pl.DataFrame:
    """JSON Lines; when a line is broken, every line is parsed on its own and the broken ones
    keep their text in ``__raw_line`` and the parser's complaint in ``__json_error``."""
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        pass
    rows: list[dict] = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:  # error path only: the fast reader above refused the file
            if not line.strip():
                continue
            try:
                value = json.loads(line)
                rows.append(value if isinstance(value, dict) else {"__json_error": "not an object"})
            except json.JSONDecodeError as exc:
                rows.append({"__json_error": str(exc), "__raw_line": line.rstrip("\n")[:2000]})
    frame = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    for col in ("__json_error", "__raw_line"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(col))
    return frame


def scan_file(path: str, *, flat: bool = True) -> pl.LazyFrame:
    """A lazy frame of one file's rows (CSV as all-text columns), nested fields flattened.

    Raises IngestError naming the file when it cannot be parsed at all.
    """
    suffix = Path(path).suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            lf = pl.scan_parquet(path)
        elif suffix in JSON_SUFFIXES:
            if _json_kind(path) == "array":
                lf = pl.read_json(path, infer_schema_length=None).lazy()
            else:
                lf = _read_json_lines(path).lazy()
        else:
            lf = pl.scan_csv(
                path,
                separator=sniff_delimiter(path),
                infer_schema=False,  # every value as text: bad values become rejects, not crashes
                truncate_ragged_lines=True,
                encoding="utf8-lossy",
            )
        schema = lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise IngestError(
            f"cannot read {path}: {exc}. Fix: make it valid CSV (header row first), Parquet or "
            "JSON Lines, or move it out of the source folder."
        ) from exc
    # Header names with stray spaces ("user_id ") still match.
    renames = {c: c.strip().lstrip("\ufeff") for c in schema if c != c.strip().lstrip("\ufeff")}
    if renames:
        lf = lf.rename(renames)
    return flatten(lf) if flat else lf
