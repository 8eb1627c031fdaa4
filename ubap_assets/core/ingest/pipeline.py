"""ingest_files: event files of any supported shape -> events, rejects, users, pages."""

import functools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from ubap_assets.core.ingest.derive import (
    UNKNOWN,
    complete_pages,
    derive_pages,
    derive_sessions,
    derive_users,
    slug,
    url_to_page_id,
)
from ubap_assets.core.ingest.errors import IngestError, MappingError
from ubap_assets.core.ingest.mapping import (
    IGNORE,
    NUMBER_FIELDS,
    OFFSET_UNITS,
    REQUIRED_FIELDS,
    FieldSpec,
    Mapping,
    load_mapping,
    norm_event,
    resolve_columns,
    suggest_mapping,
)
from ubap_assets.core.ingest.read import (
    PARSE_ERROR,
    RAW_LINE,
    SUFFIXES,
    expand_lists,
    flatten,
    is_blank,
    list_files,
    read_file,
)
from ubap_assets.core.ingest.timestamps import EARLIEST, LATEST, to_utc
from ubap_assets.core.schema import (
    EVENT_REJECTS_SCHEMA,
    EVENT_TYPES,
    EVENTS_SCHEMA,
    PAGES_SCHEMA,
    USERS_SCHEMA,
)

# Two rows with the same values here, after page ids are derived, are the same event (used when a
# file has no event ids). The URL and title stay in: two events in the same second on pages that
# only differ in their query string, or derived from their titles, are two events.
CONTENT = (
    "user_id",
    "session_id",
    "event_ts",
    "event_type",
    "page_id",
    "device",
    "traffic_source",
    "revenue",
    "page_url",
    "page_title",
)
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


@dataclass(frozen=True)
class IngestResult:
    events: pl.DataFrame  # EVENTS_SCHEMA, in the [start, end) window, sorted by event_ts
    rejects: pl.DataFrame  # EVENT_REJECTS_SCHEMA, for the whole source
    users: pl.DataFrame  # USERS_SCHEMA, from every loaded event of the source
    pages: pl.DataFrame  # PAGES_SCHEMA, catalogue file plus pages derived from the events
    files: list[str]  # files read
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Prepared:
    loaded: pl.DataFrame  # INTERNAL_SCHEMA, every loaded row of the source
    rejects: pl.DataFrame
    users: pl.DataFrame
    pages: pl.DataFrame
    stats: dict[str, int]


# --- one file -> canonical columns + a reject reason per row ---------------------------------


# Text that exports write for "no value" (pandas, Postgres COPY, JavaScript).
NULL_TOKENS = ["", "null", "NULL", "Null", "None", "none", "nan", "NaN", "undefined", "\\N"]


def _text(col: str) -> pl.Expr:
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
            parts.append(pl.coalesce([_text(c) for c in found]))
            used += found
        return pl.concat_str(parts, separator=spec.sep), used
    found = usable(resolve_columns(columns, spec.candidates))
    if not found:
        return None, []
    if numeric and all(schema[c].is_numeric() for c in found):
        return pl.coalesce([pl.col(c).cast(pl.Float64) for c in found]), found
    return pl.coalesce([_text(c) for c in found]), found


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
        number, bad_offset = _number(offset, offset.dtype.is_numeric())
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


def _number(col: str | pl.Series, schema_numeric: bool) -> tuple[pl.Expr, pl.Expr]:
    """(value, is_bad) of a number column: text that is not a finite number is bad."""
    raw = pl.col(col) if isinstance(col, str) else pl.lit(col)
    value = (
        raw
        if schema_numeric
        else raw.str.replace_all(r"[\s$€£]", "").cast(pl.Float64, strict=False)
    )
    bad = raw.is_not_null() & (value.is_null() | ~value.is_finite())
    return pl.when(bad).then(None).otherwise(value), bad


def _read_canonical(
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
    revenue, bad_revenue = _number("revenue", df.schema["revenue"].is_numeric())
    price, _ = _number("page_price", df.schema["page_price"].is_numeric())
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
            _raw_json(orig, rejected["__row"]), on="__row", how="left"
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


# --- the whole source -------------------------------------------------------------------------


def _map_distinct(values: pl.Series, fn) -> pl.Series:
    """Apply an expression to the distinct values only (a few devices, a few hundred pages)."""
    distinct = values.unique()
    mapped = pl.select(fn(pl.lit(distinct))).to_series()
    if mapped.equals(distinct, check_names=False):
        return values  # already clean: nothing to replace
    return values.replace_strict(distinct, mapped, return_dtype=pl.String)


def _label(value: pl.Expr) -> pl.Expr:
    value = value.str.to_lowercase().str.strip_chars("() ").str.replace_all(r"\s+", "_")
    return pl.when(value.is_null() | (value == "")).then(pl.lit(UNKNOWN)).otherwise(value)


def _page_id(page_id: pl.Expr) -> pl.Expr:
    # A URL used as the page id is reduced to its path, like page_url.
    looks_like_url = page_id.str.contains(r"^(/|[a-zA-Z][a-zA-Z0-9+.-]*://)")
    return pl.when(looks_like_url).then(url_to_page_id(page_id)).otherwise(page_id)


def _normalise(valid: pl.DataFrame) -> pl.DataFrame:
    """Lower-case devices and sources, and a page id for every event (from url or title)."""
    page_id = _map_distinct(valid["page_id"], _page_id)
    if page_id.null_count():
        from_url = _map_distinct(valid["page_url"], url_to_page_id)
        from_title = _map_distinct(
            valid["page_title"],
            lambda t: pl.when(t.is_not_null()).then(pl.lit("/") + slug(t)),
        )
        page_id = pl.select(
            pl.coalesce(pl.lit(page_id), pl.lit(from_url), pl.lit(from_title), pl.lit(UNKNOWN))
        ).to_series()
    return valid.with_columns(
        device=_map_distinct(valid["device"], _label),
        traffic_source=_map_distinct(valid["traffic_source"], _label),
        page_id=page_id,
    )


def _dedup(valid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(kept rows, rows whose id another row with other content already holds, duplicates).

    Exact duplicates (same id and content, e.g. the same file twice) collapse into the first;
    only rows sharing an id, or rows without one, are compared column by column.
    """
    has_id = valid["event_id"].is_not_null()
    candidates = ~has_id | (has_id & valid["event_id"].is_duplicated())
    if not candidates.any():
        return valid, valid.head(0), 0
    idx = candidates.arg_true()
    check = valid[idx].with_columns(__i=idx)
    kept = check.unique(subset=["event_id", *CONTENT], keep="first", maintain_order=True)
    conflict = kept["event_id"].is_not_null() & ~kept["event_id"].is_first_distinct()
    keep = (~candidates).scatter(kept.filter(~conflict)["__i"], True)
    return valid.filter(keep), kept.filter(conflict).drop("__i"), check.height - kept.height


def _raw_json(orig: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """__row -> the original row as JSON text (the line itself for broken JSON)."""
    cols = [c for c in orig.columns if c not in ("__row", PARSE_ERROR, RAW_LINE)]
    raw = pl.struct(cols).struct.json_encode() if cols else pl.lit("{}")
    if RAW_LINE in orig.columns:
        raw = pl.coalesce(pl.col(RAW_LINE), raw)
    picked = orig.filter(pl.col("__row").is_in(rows.cast(orig.schema["__row"]).implode()))
    return picked.select(pl.col("__row").cast(pl.Int64), raw.alias("raw"))


def _raw_rows(rejected: pl.DataFrame) -> pl.DataFrame:
    """Read back the original text of rejected rows found after the files were read."""
    parts = []
    for path in rejected["__file"].unique().sort().to_list():
        rows = rejected.filter(pl.col("__file") == path)["__row"]
        orig = read_file(path, flat=False).with_row_index("__row", offset=1)
        orig = orig.filter(pl.col("__row").is_in(rows.implode()))
        parts.append(_raw_json(orig, rows).with_columns(__file=pl.lit(path)))
    return pl.concat(parts) if parts else pl.DataFrame(schema=REJECTED_SCHEMA)


def _read_pages_file(pages_file: str) -> pl.DataFrame:
    files = list_files(pages_file)
    if not files:
        raise IngestError(f"pages file {pages_file!r} not found; give a CSV, Parquet or JSONL file")
    lf = read_file(files[0]).lazy()
    cols = lf.collect_schema().names()
    aliases = {
        "page_id": ("page_id", "id", "product_id", "item_id"),
        "page_url": ("url", "page_url", "page_location", "path"),
        "page_title": ("title", "page_title", "name", "item_name"),
        "page_description": ("description", "page_description"),
        "page_category": ("category", "page_category", "category_code", "item_category"),
        "page_type": ("page_type", "type"),
        "page_brand": ("brand", "item_brand"),
        "page_price": ("price", "page_price", "item_price"),
    }
    exprs = []
    for target, names in aliases.items():
        found = resolve_columns(cols, names)
        if target == "page_id" and not found:
            raise IngestError(
                f"pages file {files[0]} has no page_id column (columns: {', '.join(cols)}); "
                "fix: name the id column page_id"
            )
        exprs.append((_text(found[0]) if found else pl.lit(None, pl.String)).alias(target))
    df = lf.select(exprs).collect()
    price, _ = _number("page_price", False)
    return df.with_columns(page_price=price).unique("page_id", keep="first", maintain_order=True)


def _prepare(files: tuple[str, ...], mapping: Mapping, pages_file: str | None) -> _Prepared:
    stats: dict[str, int] = {"files_read": 0, "empty_files": 0, "rows_read": 0}
    frames, rejected_parts = [], []
    for path in files:
        stats["files_read"] += 1
        if is_blank(path):
            stats["empty_files"] += 1
            continue
        read = _read_canonical(path, mapping, stats)
        if read is not None:
            frames.append(read[0])
            rejected_parts.append(read[1])
    if not frames:
        raise IngestError(
            f"no event rows in {len(files)} file(s) ({', '.join(files[:5])}): every file is empty "
            "or holds only a header. Fix: add event rows, or check the source path (UBAP_SOURCE)."
        )
    ingested_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    rows = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    del frames
    rejected = pl.concat(rejected_parts)
    # One split of all rows (copying 10M rows twice costs seconds): rejected, ignored, valid.
    ignored = rows.filter(pl.col("__ignored") & ~pl.col("__rejected"))
    keep = ~(rows["__ignored"] | rows["__rejected"])
    valid = (rows if keep.all() else rows.filter(keep)).drop("__rejected")
    del rows
    stats["rows_ignored"] = ignored.height
    for name, n in ignored.group_by("__event_raw").len().sort("__event_raw").iter_rows():
        stats[f"ignored:{name}"] = n

    # Duplicates are judged on what the events are once page ids are derived (two events in the
    # same second on two URLs are two events).
    valid = _normalise(valid)
    valid, conflicts, stats["duplicates"] = _dedup(valid)
    if conflicts.height:
        conflicts = conflicts.select(
            "__file",
            "__row",
            __reason=pl.format("duplicate_event_id: '{}' (same id, different content)", "event_id"),
        ).join(_raw_rows(conflicts.select("__file", "__row")), on=["__file", "__row"], how="left")
        rejected = pl.concat([rejected, conflicts.select(list(REJECTED_SCHEMA))])

    if valid["event_id"].null_count():
        # No id in the file: a hash of what the event is (page ids derived, sessions not yet).
        content_hash = pl.struct(list(CONTENT)).hash(seed=8).cast(pl.String)
        valid = valid.with_columns(
            event_id=pl.coalesce(pl.col("event_id"), pl.lit("h") + content_hash)
        )
    derived = valid["session_id"].is_null()
    loaded = derive_sessions(valid, mapping.session_gap_minutes)
    stats["sessions_derived"] = loaded.filter(derived)["session_id"].n_unique()
    loaded = loaded.select([pl.col(c).cast(t) for c, t in INTERNAL_SCHEMA.items()]).sort(
        "event_ts", "event_id"
    )

    rejects = (
        rejected.select(
            source_file=pl.col("__file"),
            row_number=pl.col("__row"),
            reason=pl.col("__reason"),
            raw=pl.col("raw").fill_null("{}"),
            ingested_at=pl.lit(ingested_at),
        )
        .sort("source_file", "row_number")
        .select([pl.col(c).cast(t) for c, t in EVENT_REJECTS_SCHEMA.items()])
    )
    for reason, n in _reason_counts(rejects):
        stats[f"rejected:{reason}"] = n

    users = derive_users(loaded.lazy())
    pages = derive_pages(loaded.lazy())
    stats["pages_derived"] = pages.height
    if pages_file:
        catalogue = complete_pages(_read_pages_file(pages_file))
        extra = pages.filter(~pl.col("page_id").is_in(catalogue["page_id"].implode()))
        pages = pl.concat([catalogue, extra]).sort("page_id")
        stats["pages_from_catalogue"] = catalogue.height
        stats["pages_derived"] = extra.height
    stats.update(
        rows_rejected=rejects.height,
        rows_valid=loaded.height,
        users=users.height,
        pages=pages.height,
        events_without_page=loaded.filter(pl.col("page_id") == UNKNOWN).height,
        unknown_columns=sum(1 for k in stats if k.startswith("unknown_column:")),
    )
    return _Prepared(loaded, rejects, users, pages, stats)


def _reason_counts(rejects: pl.DataFrame) -> list[tuple[str, int]]:
    return (
        rejects.group_by(reason=pl.col("reason").str.extract(r"^([a-z_]+)", 1))
        .len()
        .sort(["len", "reason"], descending=[True, False])
        .iter_rows()
    )


@functools.lru_cache(maxsize=1)
def _prepare_cached(
    fingerprint: tuple[tuple[str, int, int], ...],
    mapping_spec: str | None,
    mapping_key: str,
    pages_file: str | None,
    pages_fingerprint: tuple[int, int] | None,
) -> _Prepared:
    # Keyed on names, sizes and mtimes: calling once per partition window reads the files once.
    del mapping_key, pages_fingerprint  # part of the cache key only
    files = tuple(f for f, _, _ in fingerprint)
    return _prepare(files, load_mapping(mapping_spec), pages_file)


def clear_cache() -> None:
    """Forget the last source read (it is kept so per-partition calls read the files once)."""
    _prepare_cached.cache_clear()


def _fingerprint(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _share_error(prepared: _Prepared, share: float, limit: float, mapping: Mapping) -> str:
    stats = prepared.stats
    top = sorted(
        ((k.split(":", 1)[1], v) for k, v in stats.items() if k.startswith("rejected:")),
        key=lambda kv: -kv[1],
    )[:3]
    examples = []
    for code, n in top:
        example = prepared.rejects.filter(pl.col("reason").str.starts_with(code))
        first = example.row(0, named=True) if example.height else None
        where = f" e.g. {first['reason']!r} at {first['source_file']} row {first['row_number']}"
        examples.append(f"{code} ({n:,}){where if first else ''}")
    hints = {
        "missing_column": "the files are in another shape: set UBAP_SOURCE_MAPPING to a built-in "
        "mapping (native, segment, ecommerce, ga4) or a mapping file",
        "bad_timestamp": "set timestamp_format / time_zone in a mapping file",
        "unknown_event_type": "map those names in event_types of a mapping file (null ignores "
        "them) or set unmapped_event_types",
        "missing_user": "map user_id to the column holding the user (columns.user_id)",
        "id_in_scientific_notation": "re-export the file with the id columns as text (a "
        "spreadsheet turned long numbers into 2.81772E+18)",
        "malformed_csv": "repair or cut the listed lines (a cut-off export, stray quotes, "
        "binary data)",
        "duplicate_event_id": "event ids must be unique; map event_id to a unique column or "
        "leave it unmapped to use a content hash",
    }
    fixes = [hints[c] for c, _ in top if c in hints]
    return (
        f"ingestion rejected {stats['rows_rejected']:,} of {stats['rows_read']:,} rows "
        f"({share:.1%}), above the allowed share of {limit:.1%} (max_reject_share, "
        f"UBAP_MAX_REJECT_SHARE). Mapping: {mapping.name}. Top reasons: {'; '.join(examples)}. "
        f"Fix: {'; '.join(fixes) or 'correct the rows listed in the rejects'}, or raise the "
        "allowed share. The rejects frame (event_rejects) lists every row with its reason."
    )


def ingest_files(
    source: str,
    mapping: str | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    max_reject_share: float = 0.05,
    pages_file: str | None = None,
) -> IngestResult:
    """Read every event file under ``source`` into the ubap schema.

    ``source``: a directory (read recursively), a glob or one file; CSV (delimiter sniffed),
    Parquet, JSON Lines or a JSON array. ``mapping``: None for the native schema, a built-in name
    (segment, ecommerce, ga4) or a JSON/TOML mapping file. ``events`` holds the events in
    ``[start, end)`` (naive UTC, or aware datetimes converted); rejects, users and pages always
    cover the whole source. Raises IngestError when rejects exceed ``max_reject_share`` of the
    rows read (the error carries the result in ``.result``), when no file or no row is found.
    """
    try:
        resolved = load_mapping(mapping)
    except MappingError as exc:
        raise IngestError(str(exc)) from exc
    if not 0.0 <= max_reject_share <= 1.0:
        raise IngestError(f"max_reject_share must lie in [0, 1], got {max_reject_share}")
    files = list_files(source)
    if pages_file:  # a catalogue kept next to the events is not an event file
        files = [f for f in files if os.path.abspath(f) != os.path.abspath(pages_file)]
    if not files:
        raise IngestError(
            f"no event files found at {source!r} (looked for {', '.join(SUFFIXES)}). Fix: put "
            "files there or point UBAP_SOURCE at the folder or glob that holds them."
        )
    fingerprint = tuple((f, *_fingerprint(f)) for f in files)
    pages_fp = _fingerprint(pages_file) if pages_file and os.path.isfile(pages_file) else None
    prepared = _prepare_cached(fingerprint, mapping, resolved.key(), pages_file, pages_fp)
    start, end = _naive_utc(start), _naive_utc(end)
    window = pl.lit(True)
    if start is not None:
        window = window & (pl.col("event_ts") >= start)
    if end is not None:
        window = window & (pl.col("event_ts") < end)
    events = prepared.loaded.filter(window).select(list(EVENTS_SCHEMA))
    stats = dict(prepared.stats)
    stats["rows_loaded"] = events.height
    stats["rows_outside_window"] = prepared.loaded.height - events.height
    result = IngestResult(
        events=events,
        rejects=prepared.rejects,
        users=prepared.users,
        pages=prepared.pages,
        files=list(files),
        stats=stats,
    )
    share = stats["rows_rejected"] / max(stats["rows_read"], 1)
    if share > max_reject_share:
        raise IngestError(_share_error(prepared, share, max_reject_share, resolved), result)
    return result


def empty_result() -> IngestResult:
    """An IngestResult with no rows (schemas intact)."""
    return IngestResult(
        events=pl.DataFrame(schema=EVENTS_SCHEMA),
        rejects=pl.DataFrame(schema=EVENT_REJECTS_SCHEMA),
        users=pl.DataFrame(schema=USERS_SCHEMA),
        pages=pl.DataFrame(schema=PAGES_SCHEMA),
        files=[],
        stats={},
    )
