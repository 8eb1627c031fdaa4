"""ingest_files: event files of any supported shape -> events, rejects, users, pages."""

import functools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from ubap_assets.core.ingest.canonical import (
    INTERNAL_SCHEMA,
    REJECTED_SCHEMA,
    number_expr,
    raw_json,
    read_canonical,
    text_expr,
)
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
    Mapping,
    load_mapping,
    resolve_columns,
)
from ubap_assets.core.ingest.read import (
    SUFFIXES,
    is_blank,
    list_files,
    read_file,
)
from ubap_assets.core.schema import (
    EVENT_REJECTS_SCHEMA,
    EVENTS_SCHEMA,
    PAGES_SCHEMA,
    USERS_SCHEMA,
)

# Two rows with the same values here, after page ids are derived, are the same event (used when a
# file has no event ids). The URL and title stay in: two events in the same second on pages that
# only differ in their query string, or derived from their titles, are two events.
CONTENT = (*(c for c in EVENTS_SCHEMA if c != "event_id"), "page_url", "page_title")


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


def _raw_rows(rejected: pl.DataFrame) -> pl.DataFrame:
    """Read back the original text of rejected rows found after the files were read."""
    parts = []
    for path in rejected["__file"].unique().sort().to_list():
        rows = rejected.filter(pl.col("__file") == path)["__row"]
        orig = read_file(path, flat=False).with_row_index("__row", offset=1)
        orig = orig.filter(pl.col("__row").is_in(rows.implode()))
        parts.append(raw_json(orig, rows).with_columns(__file=pl.lit(path)))
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
        exprs.append((text_expr(found[0]) if found else pl.lit(None, pl.String)).alias(target))
    df = lf.select(exprs).collect()
    price, _ = number_expr("page_price", False)
    return df.with_columns(page_price=price).unique("page_id", keep="first", maintain_order=True)


def _prepare(files: tuple[str, ...], mapping: Mapping, pages_file: str | None) -> _Prepared:
    stats: dict[str, int] = {"files_read": 0, "empty_files": 0, "rows_read": 0}
    frames, rejected_parts = [], []
    for path in files:
        stats["files_read"] += 1
        if is_blank(path):
            stats["empty_files"] += 1
            continue
        read = read_canonical(path, mapping, stats)
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
