"""One file -> the canonical columns (INTERNAL_SCHEMA) and a reject reason per row."""

import polars as pl

from ubap_assets.core.ingest.errors import IngestError
from ubap_assets.core.ingest.mapping import (
    IGNORE,
    NUMBER_FIELDS,
    OFFSET_UNITS,
    REQUIRED_FIELDS,
    FieldSpec,
    Mapping,
    norm_event,
    resolve_columns,
    suggest_mapping,
)
from ubap_assets.core.ingest.read import (
    PARSE_ERROR,
    RAW_LINE,
    expand_lists,
    flatten,
    read_file,
)
from ubap_assets.core.ingest.timestamps import EARLIEST, LATEST, to_utc
from ubap_assets.core.schema import EVENT_TYPES, EVENTS_SCHEMA

ID_FIELDS = ("event_id", "user_id", "session_id", "page_id")
# What a spreadsheet makes of a long number: a mantissa with a decimal point or a signed
# exponent (2.81772E+18, 4.5E+17). "3E10" stays an id: product codes look like that.
SCIENTIFIC = r"^[+-]?\d+(?:\.\d*[eE][+-]?\d+|[eE][+-]\d+)$"
SCIENTIFIC_FIX = (
    "ids in scientific notation: the file was probably saved by a spreadsheet; export ids as text"
)
REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "__file": pl.String,
    "__row": pl.Int64,
    "__reason": pl.String,
    "raw": pl.String,
}
# Internal frame: the events columns plus what users and pages are derived from.
INTERNAL_SCHEMA: dict[str, pl.DataType] = {
    **EVENTS_SCHEMA,
    "country": pl.String,
    "signup_date": pl.Date,
    "page_url": pl.String,
    "page_title": pl.String,
    "page_description": pl.String,
    "page_category": pl.String,
    "page_type": pl.String,
    "page_brand": pl.String,
    "page_price": pl.Float64,
}


# Text that exports write for "no value" (pandas, Postgres COPY, JavaScript).
NULL_TOKENS = ["", "null", "NULL", "Null", "None", "none", "nan", "NaN", "undefined", "\\N"]


def text_expr(col: str) -> pl.Expr:
    """Text without surrounding blanks; empty text and null tokens ("null", "nan"...) are null."""
    return pl.col(col).cast(pl.String).str.strip_chars().replace(NULL_TOKENS, None)


def _field_expr(spec: FieldSpec, columns: list[str], schema: pl.Schema, numeric: bool):
    """(expression or None, columns used) for one target field of one file."""
    if spec.value is not None:
        return pl.lit(spec.value), []

    def usable(cols: list[str]) -> list[str]:
        return [c for c in cols if not isinstance(schema[c], pl.List | pl.Array | pl.Struct)]

    if spec.concat:
        parts, used = [], []
        for names in spec.concat:
            found = usable(resolve_columns(columns, names))
            if not found:
                return None, used
            parts.append(pl.coalesce([text_expr(c) for c in found]))
            used += found
        return pl.concat_str(parts, separator=spec.sep), used
    found = usable(resolve_columns(columns, spec.candidates))
    if not found:
        return None, []
    if numeric and all(schema[c].is_numeric() for c in found):
        return pl.coalesce([pl.col(c).cast(pl.Float64) for c in found]), found
    return pl.coalesce([text_expr(c) for c in found]), found


def timestamp_exprs(
    spec: FieldSpec, columns: list[str], schema: pl.Schema
) -> tuple[list[pl.Expr], pl.Expr | None, list[str]]:
    """(candidate timestamp expressions in order, the offset expression or None, columns used):
    each candidate column keeps its type (text, number, datetime); a concat (a date and a time
    column) is one text candidate. With an offset but no offset column there is no timestamp."""
    if spec.concat or spec.value is not None:
        expr, cols = _field_expr(
            FieldSpec(concat=spec.concat, sep=spec.sep, value=spec.value), columns, schema, False
        )
        exprs = [expr] if expr is not None else []
    else:
        cols = resolve_columns(columns, spec.candidates)
        exprs = [pl.col(c) for c in cols]
    if not spec.offset:
        return exprs, None, cols
    offset, offset_cols = _field_expr(FieldSpec(candidates=spec.offset), columns, schema, True)
    if offset is None:
        return [], None, cols
    return exprs, offset, cols + offset_cols


def event_timestamps(
    candidates: list[pl.Series], offset: pl.Series | None, mapping: Mapping
) -> dict[str, pl.Expr]:
    """Columns for ``with_columns``: event_ts (naive UTC: the first candidate that parses, plus
    the offset), __ts_given (a timestamp and, when mapped, an offset were there) and __bad_offset
    (an offset that is no number)."""
    parsed = [to_utc(c, mapping.timestamp_format, mapping.time_zone) for c in candidates]
    ts = pl.coalesce(parsed) if parsed else pl.lit(None, pl.Datetime("us"))
    given = pl.any_horizontal([c.is_not_null() for c in candidates]) if candidates else None
    bad_offset = pl.lit(False)
    if offset is not None:
        number, bad_offset = number_expr(offset, offset.dtype.is_numeric())
        unit = OFFSET_UNITS[mapping.fields["event_ts"].offset_unit]
        ts = ts + pl.duration(microseconds=(number * unit).round(0).cast(pl.Int64))
        ts = pl.when(ts.is_between(EARLIEST, LATEST, closed="left")).then(ts)
        given = given & offset.is_not_null() if given is not None else None
    return {
        "event_ts": ts.cast(pl.Datetime("us")),
        "__ts_given": given if given is not None else pl.lit(False),
        "__bad_offset": bad_offset,
    }


def _event_type_table(values: pl.Series, mapping: Mapping) -> dict[str, str | None]:
    """Distinct source event names -> event type, IGNORE, or None (unknown)."""
    table: dict[str, str | None] = {}
    for raw in values.drop_nulls().unique().to_list():  # distinct names only: a handful
        key = norm_event(raw)
        target = mapping.event_types.get(key, key if key in EVENT_TYPES else None)
        if target is None and mapping.unmapped_event_types != "reject":
            policy = mapping.unmapped_event_types
            target = IGNORE if policy == "ignore" else policy
        table[raw] = target
    return table


def number_expr(col: str | pl.Series, schema_numeric: bool) -> tuple[pl.Expr, pl.Expr]:
    """(value, is_bad) of a number column: text that is not a finite number is bad."""
    raw = pl.col(col) if isinstance(col, str) else pl.lit(col)
    value = (
        raw
        if schema_numeric
        else raw.str.replace_all(r"[\s$€£]", "").cast(pl.Float64, strict=False)
    )
    bad = raw.is_not_null() & (value.is_null() | ~value.is_finite())
    return pl.when(bad).then(None).otherwise(value), bad


def read_canonical(
    path: str, mapping: Mapping, stats: dict[str, int]
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """One file as (rows: INTERNAL_SCHEMA plus __file, __row, __ignored, __rejected,
    __event_raw; rejected: __file, __row, __reason, raw), or None when it holds no rows."""
    # The file as it is (kept for the raw text of its rejects), then flattened for the mapping.
    orig = read_file(path, flat=False).with_row_index("__row", offset=1)
    try:
        lf = flatten(expand_lists(orig).lazy())
        schema = lf.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise IngestError(
            f"cannot read the columns of {path}: {exc}. Fix: give it flat columns or the nested "
            "shape of a built-in mapping, or move it out of the source folder."
        ) from exc
    columns = [c for c in schema if c != "__row"]
    exprs: dict[str, pl.Expr] = {}
    used: set[str] = set()
    ts_exprs: list[pl.Expr] = []
    ts_offset: pl.Expr | None = None
    missing: list[str] = []
    for name, spec in mapping.fields.items():
        if name == "event_ts":
            ts_exprs, ts_offset, ts_cols = timestamp_exprs(spec, columns, schema)
            used.update(ts_cols)
            if not ts_exprs:
                missing.append(name)
            continue
        expr, cols = _field_expr(spec, columns, schema, name in NUMBER_FIELDS)
        used.update(cols)
        if expr is None:
            if name in REQUIRED_FIELDS:
                missing.append(name)
            continue
        exprs[name] = expr.alias(name)
    broken = PARSE_ERROR in columns
    used.update((PARSE_ERROR, RAW_LINE))
    for c in sorted(set(columns) - used):
        key = f"unknown_column:{c}"
        stats[key] = stats.get(key, 0) + 1

    df = lf.select(
        pl.col("__row").cast(pl.Int64),
        *exprs.values(),
        *[e.alias(f"__ts{i}") for i, e in enumerate(ts_exprs)],
        *([ts_offset.alias("__ts_offset")] if ts_offset is not None else []),
        (pl.col(PARSE_ERROR) if broken else pl.lit(None, pl.String)).alias(PARSE_ERROR),
    ).collect()
    stats["rows_read"] = stats.get("rows_read", 0) + df.height
    if df.height == 0:
        stats["empty_files"] = stats.get("empty_files", 0) + 1
        return None

    # Timestamps: the first candidate column that parses wins; mixed zones are fine per row.
    ts_names = [f"__ts{i}" for i in range(len(ts_exprs))]
    offset = df["__ts_offset"] if ts_offset is not None else None
    df = df.with_columns(**event_timestamps([df[c] for c in ts_names], offset, mapping))
    for name in INTERNAL_SCHEMA:
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, INTERNAL_SCHEMA[name]).alias(name))

    table = _event_type_table(df["event_type"], mapping)
    if all(k == v for k, v in table.items()):  # every name already is an event type
        df = df.with_columns(__type=pl.col("event_type"))
    else:
        df = df.with_columns(
            __type=pl.col("event_type").replace_strict(table, default=None, return_dtype=pl.String)
        )
    revenue, bad_revenue = number_expr("revenue", df.schema["revenue"].is_numeric())
    price, _ = number_expr("page_price", df.schema["page_price"].is_numeric())
    if (scale := _scale(mapping, "revenue")) is not None:
        revenue = revenue * scale
    if (scale := _scale(mapping, "page_price")) is not None:
        price = price * scale
    scientific = {f: pl.col(f).str.contains(SCIENTIFIC).fill_null(False) for f in ID_FIELDS}
    is_purchase = pl.col("__type") == "purchase"
    df = df.with_columns(signup_date=to_utc(df["signup_date"], "auto", mapping.time_zone).dt.date())

    # Reason codes first (cheap literals); the details are written for the rejected rows only.
    code = (
        pl.when(pl.col(PARSE_ERROR).is_not_null())
        .then(pl.lit("parse_error"))
        .when(pl.lit(bool(missing)))
        .then(pl.lit("missing_column"))
        .when(pl.col("__type") == IGNORE)
        .then(None)
        .when(~pl.col("__ts_given"))
        .then(pl.lit("missing_timestamp"))
        .when(pl.col("__bad_offset"))
        .then(pl.lit("bad_offset"))
        .when(pl.col("event_ts").is_null())
        .then(pl.lit("bad_timestamp"))
        .when(pl.col("user_id").is_null())
        .then(pl.lit("missing_user"))
        .when(pl.any_horizontal(scientific.values()))
        .then(pl.lit("id_in_scientific_notation"))
        .when(pl.col("event_type").is_null())
        .then(pl.lit("missing_event_type"))
        .when(pl.col("__type").is_null())
        .then(pl.lit("unknown_event_type"))
        .when(is_purchase & (bad_revenue | (revenue < 0)))
        .then(pl.lit("bad_revenue"))
    )
    df = df.with_columns(__code=code)
    rejected = df.filter(pl.col("__code").is_not_null())
    if rejected.height:

        def quoted(col: pl.Expr) -> pl.Expr:
            return pl.format("'{}'", col.cast(pl.String).str.slice(0, 60))

        ts_raw = pl.coalesce([pl.col(c).cast(pl.String) for c in ts_names]) if ts_names else None
        which_id = pl.when(False).then(None)
        for name, is_scientific in scientific.items():
            named = pl.format(name + " {}", quoted(pl.col(name)))
            which_id = which_id.when(is_scientific).then(named)
        detail = {
            "missing_column": pl.lit(_missing_reason(missing, mapping, columns)),
            "bad_timestamp": quoted(ts_raw) if ts_raw is not None else None,
            "bad_offset": pl.format("offset {} is not a number", quoted(pl.col("__ts_offset")))
            if offset is not None
            else None,
            "id_in_scientific_notation": pl.format("{}: " + SCIENTIFIC_FIX, which_id),
            "unknown_event_type": quoted(pl.col("event_type")),
            "bad_revenue": quoted(pl.col("revenue")),
        }
        codes = {"bad_offset": "bad_timestamp"}  # how a code reads in the reason
        text = pl.col("__code")
        for name, expr in detail.items():
            if expr is not None:
                text = (
                    pl.when(pl.col("__code") == name)
                    .then(pl.format(codes.get(name, name) + ": {}", expr))
                    .otherwise(text)
                )
        # The reader wrote the whole reason (bad_json: ..., malformed_csv: line N: ...).
        text = pl.when(pl.col("__code") == "parse_error").then(pl.col(PARSE_ERROR)).otherwise(text)
        rejected = rejected.select(__file=pl.lit(path), __row=pl.col("__row"), __reason=text).join(
            raw_json(orig, rejected["__row"]), on="__row", how="left"
        )
    else:
        rejected = pl.DataFrame(schema=REJECTED_SCHEMA)
    good = df.with_columns(
        __file=pl.lit(path),
        __ignored=(pl.col("__type") == IGNORE).fill_null(False),
        __event_raw=pl.col("event_type"),
        event_type=pl.col("__type"),
        revenue=pl.when(is_purchase).then(revenue),
        page_price=price,
        __rejected=pl.col("__code").is_not_null(),
    ).drop("__type", PARSE_ERROR, "__code", "__ts_given", "__bad_offset", *ts_names)
    if offset is not None:
        good = good.drop("__ts_offset")
    return good, rejected


def _scale(mapping: Mapping, field: str) -> float | None:
    spec = mapping.fields.get(field)
    return spec.scale if spec is not None else None


def _missing_reason(missing: list[str], mapping: Mapping, columns: list[str]) -> str:
    wanted = "; ".join(
        f"{f} (looked for {', '.join(mapping.fields[f].columns()) or 'nothing'})" for f in missing
    )
    hint = suggest_mapping(columns)
    if hint and hint != mapping.name:
        wanted += f"; the columns look like the {hint!r} mapping (UBAP_SOURCE_MAPPING={hint})"
    return f"missing_column: no column for {wanted}"


def raw_json(orig: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """__row -> the original row as JSON text (the line itself for broken JSON)."""
    cols = [c for c in orig.columns if c not in ("__row", PARSE_ERROR, RAW_LINE)]
    raw = pl.struct(cols).struct.json_encode() if cols else pl.lit("{}")
    if RAW_LINE in orig.columns:
        raw = pl.coalesce(pl.col(RAW_LINE), raw)
    picked = orig.filter(pl.col("__row").is_in(rows.cast(orig.schema["__row"]).implode()))
    return picked.select(pl.col("__row").cast(pl.Int64), raw.alias("raw"))
