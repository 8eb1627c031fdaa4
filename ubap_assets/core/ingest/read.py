"""Finding and reading event files: CSV (any of , ; tab |), Parquet, JSON Lines, JSON arrays."""

import csv
import glob
import json
import os
import tempfile
from pathlib import Path

import duckdb
import polars as pl

from ubap_assets.core.ingest.errors import IngestError

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES
_SNIFF_BYTES = 64 * 1024
# Columns the readers add for rows they could not parse: the reason and the line as written.
PARSE_ERROR = "__parse_error"
RAW_LINE = "__raw_line"
# A quoted field may span lines; one that is still open after this many lines never closes.
_MAX_QUOTED_LINES = 100


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
    """The delimiter DuckDB's CSV sniffer detects (``,`` ``;`` tab ``|``); a malformed region
    does not confuse it (ignore_errors). Files it cannot sniff are read as comma-separated
    (tab-separated for ``.tsv``) and fail or become rejects downstream."""
    fallback = "\t" if path.lower().endswith(".tsv") else ","
    try:
        with duckdb.connect() as con:
            found = con.execute(
                "SELECT Delimiter FROM sniff_csv(?, ignore_errors = true)", [path]
            ).fetchone()
    except duckdb.Error:
        return fallback
    return found[0] if found and len(found[0]) == 1 else fallback


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
    keep their text in ``__raw_line`` and ``bad_json: <the parser's complaint>`` in
    ``__parse_error``."""
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
            except json.JSONDecodeError as exc:
                value = {PARSE_ERROR: f"bad_json: {exc}", RAW_LINE: line.rstrip("\r\n")[:2000]}
            if not isinstance(value, dict):
                value = {PARSE_ERROR: "bad_json: not an object", RAW_LINE: line.rstrip("\r\n")}
            rows.append(value)
    frame = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    for col in (PARSE_ERROR, RAW_LINE):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(col))
    return frame


def _parse_record(lines: list[str], delimiter: str) -> tuple[list[str] | None, str | None]:
    """(fields, None) when ``lines`` hold exactly one well-formed record, else (None, error)."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        fields = next(reader, [])
    except csv.Error as exc:
        return None, str(exc)
    return (fields, None) if reader.line_num == len(lines) else (None, "more than one record")


def _salvage_csv(path: str, delimiter: str) -> pl.DataFrame:
    """A CSV the fast reader refused, record by record (stdlib csv, streaming to a clean copy).

    Each record keeps its position (``__row`` then counts records, as for a clean file); a
    record that cannot be parsed keeps ``malformed_csv: line N: <why>`` in ``__parse_error`` and
    its line in ``__raw_line``, and parsing goes on at the next line. A quoted field may span
    lines only when the record it closes has the header's number of fields: an unterminated
    quote costs its own line, not the rest of the file.
    """
    fd, clean = tempfile.mkstemp(suffix=".csv", prefix="ubap-salvage-")
    try:
        with (
            open(path, encoding="utf-8", errors="replace", newline="") as src,
            os.fdopen(fd, "w", encoding="utf-8", newline="") as out,
        ):
            header = next(csv.reader([src.readline().lstrip("\ufeff")], delimiter=delimiter))
            width = len(header)
            writer = csv.writer(out)
            writer.writerow([*header, PARSE_ERROR, RAW_LINE])
            pending: list[str] = []  # lines read ahead for a quoted field that did not close
            line_no = 1

            def next_line() -> str | None:
                return pending.pop(0) if pending else (src.readline() or None)

            def reject(line: str, why: str) -> None:
                text = f"malformed_csv: line {line_no}: {why}"
                writer.writerow([None] * width + [text, line.rstrip("\r\n")[:2000]])

            while (line := next_line()) is not None:
                line_no += 1
                if not line.strip():
                    continue
                if "\x00" in line:
                    reject(line, "binary data (NUL bytes)")
                    continue
                fields, error = _parse_record([line], delimiter)
                if error == "unexpected end of data":  # a quoted field goes on: read ahead
                    more: list[str] = []
                    while fields is None and len(more) < _MAX_QUOTED_LINES:
                        extra = next_line()
                        if extra is None:
                            break
                        more.append(extra)
                        fields, error = _parse_record([line, *more], delimiter)
                        if fields is not None and len(fields) != width:
                            fields = None
                        if error not in (None, "unexpected end of data"):
                            break
                    if fields is None:
                        pending[:0] = more
                        reject(line, "unterminated quote (the quoted field never closes)")
                        continue
                    line_no += len(more)
                elif fields is None:
                    reject(line, error or "unreadable")
                    continue
                row = (fields + [None] * width)[:width]  # ragged rows as the fast reader has them
                writer.writerow([*row, None, None])
        return pl.read_csv(clean, infer_schema=False, encoding="utf8-lossy")
    finally:
        os.unlink(clean)


def _read_csv(path: str) -> pl.DataFrame:
    """Every value as text (bad values become rejects, not crashes). The fast reader first; a
    file it refuses, or one where a quoted field spans lines (which a stray quote can fake), is
    read record by record by ``_salvage_csv``."""
    delimiter = sniff_delimiter(path)
    try:
        frame = pl.read_csv(
            path,
            separator=delimiter,
            infer_schema=False,
            truncate_ragged_lines=True,
            encoding="utf8-lossy",
        )
    except pl.exceptions.PolarsError:
        return _salvage_csv(path, delimiter)
    spans_lines = frame.select(pl.any_horizontal(pl.all().str.contains("\n", literal=True).any()))
    if spans_lines.item():
        return _salvage_csv(path, delimiter)
    return frame


def read_file(path: str, *, flat: bool = True) -> pl.DataFrame:
    """One file's rows (CSV as all-text columns), nested fields flattened unless ``flat=False``.

    Rows a reader could not parse carry their reason in ``__parse_error`` and their text in
    ``__raw_line``. Raises IngestError naming the file when it cannot be read at all.
    """
    suffix = Path(path).suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            frame = pl.read_parquet(path)
        elif suffix in JSON_SUFFIXES:
            if _json_kind(path) == "array":
                frame = pl.read_json(path, infer_schema_length=None)
            else:
                frame = _read_json_lines(path)
        else:
            frame = _read_csv(path)
    except (pl.exceptions.PolarsError, OSError, ValueError, csv.Error) as exc:
        raise IngestError(
            f"cannot read {path}: {exc}. Fix: make it valid CSV (header row first), Parquet or "
            "JSON Lines, or move it out of the source folder."
        ) from exc
    # Header names with stray spaces ("user_id ") still match.
    renames = {c: c.strip().lstrip("\ufeff") for c in frame.columns}
    frame = frame.rename({k: v for k, v in renames.items() if k != v})
    return flatten(frame.lazy()).collect() if flat else frame


def scan_file(path: str) -> pl.LazyFrame:
    """``read_file`` as a lazy frame; Parquet is scanned, so a caller that selects a few columns
    (the sensor's day lookup) reads only those."""
    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        try:
            lf = pl.scan_parquet(path)
            lf.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise IngestError(
                f"cannot read {path}: {exc}. Fix: make it valid Parquet, or move it out of the "
                "source folder."
            ) from exc
        return flatten(lf)
    return read_file(path).lazy()
