"""Bring your own events: ingest event logs from CSV, Parquet or JSON Lines files (Dagster-free).

``ingest_files(source, mapping)`` reads a folder or glob of files in the documented event schema
(or a common export shape through a mapping), validates every row (rejects keep their reason),
deduplicates, derives sessions, users and pages, and returns frames in the schemas of
``ubap_assets.core.schema``. ``source_settings()`` reads the UBAP_SOURCE* environment variables.
See docs/ingest.md.
"""

from ubap_assets.core.ingest.errors import IngestError, MappingError, SourceSettingsError
from ubap_assets.core.ingest.inbox import file_days, inbox_state
from ubap_assets.core.ingest.mapping import Mapping, load_mapping, parse_mapping
from ubap_assets.core.ingest.pipeline import (
    IngestResult,
    clear_cache,
    empty_result,
    ingest_files,
)
from ubap_assets.core.ingest.read import list_files
from ubap_assets.core.ingest.settings import SourceSettings, source_settings

__all__ = [
    "IngestError",
    "IngestResult",
    "Mapping",
    "MappingError",
    "SourceSettings",
    "SourceSettingsError",
    "clear_cache",
    "empty_result",
    "file_days",
    "inbox_state",
    "ingest_files",
    "list_files",
    "load_mapping",
    "parse_mapping",
    "source_settings",
]
