"""The source setting: synthetic data (default) or event files, from environment variables.

The variables are declared in ``ubap_assets.settings``; this module checks what they point at
(a known mapping, an existing page file) and raises ``SourceSettingsError`` naming the variable.
"""

import os
from collections.abc import Mapping as EnvMapping
from dataclasses import dataclass

from pydantic import ValidationError

from ubap_assets.core.ingest.errors import MappingError, SourceSettingsError
from ubap_assets.core.ingest.mapping import load_mapping
from ubap_assets.core.mappings import BUILTIN_MAPPINGS
from ubap_assets.settings import SYNTHETIC, Settings
from ubap_assets.warehouse.paths import inbox_dir

# The settings fields that say where the events come from.
SOURCE_FIELDS = ("source", "source_mapping", "max_reject_share", "pages_file")


@dataclass(frozen=True)
class SourceSettings:
    kind: str  # "synthetic" or "files"
    path: str | None  # directory, glob or file (files only)
    mapping: str | None  # None (native), a built-in name or a mapping file
    max_reject_share: float
    pages_file: str | None

    @property
    def is_files(self) -> bool:
        return self.kind == "files"


def source_settings(environ: EnvMapping[str, str] | None = None) -> SourceSettings:
    """Read and validate the source variables (``os.environ`` unless given).

    - ``UBAP_SOURCE``: ``synthetic`` (default), ``inbox`` (the inbox folder, see
      ``UBAP_INBOX_DIR``) or a directory / glob / file of events.
    - ``UBAP_SOURCE_MAPPING``: a built-in mapping name (native, segment, ecommerce, ga4) or a
      .json/.toml mapping file; unset means the native schema.
    - ``UBAP_MAX_REJECT_SHARE``: the share of rejected rows that fails a run (default 0.05).
    - ``UBAP_PAGES_FILE``: an optional page catalogue (page_id, url, title, description,
      category, page_type, price).
    """
    env = os.environ if environ is None else environ
    try:
        read = Settings.from_environ(env, SOURCE_FIELDS)
    except ValidationError:
        # The share is the only source variable with a type to get wrong.
        share_text = env.get(Settings.variable("max_reject_share"), "").strip()
        raise SourceSettingsError(
            f"UBAP_MAX_REJECT_SHARE={share_text!r} must be a number between 0 and 1 (e.g. 0.05)"
        ) from None
    if read.source.lower() == SYNTHETIC:
        kind, path = SYNTHETIC, None
    elif read.source.lower() in ("inbox", "files"):
        kind, path = "files", str(inbox_dir())
    else:
        kind, path = "files", read.source

    mapping = read.source_mapping or None
    if mapping is not None:
        looks_like_file = mapping.lower().endswith((".json", ".toml")) or os.sep in mapping
        if mapping not in BUILTIN_MAPPINGS and not looks_like_file:
            raise SourceSettingsError(
                f"UBAP_SOURCE_MAPPING={mapping!r} is not a built-in mapping; valid values: "
                f"{', '.join(BUILTIN_MAPPINGS)}, or the path of a .json/.toml mapping file"
            )
        try:
            load_mapping(mapping)
        except MappingError as exc:
            raise SourceSettingsError(f"UBAP_SOURCE_MAPPING={mapping!r}: {exc}") from exc

    pages_file = read.pages_file or None
    if pages_file is not None and not os.path.isfile(pages_file):
        raise SourceSettingsError(
            f"UBAP_PAGES_FILE={pages_file!r} does not exist; give a CSV, Parquet or JSONL page "
            "catalogue or unset it to derive the pages from the events"
        )
    return SourceSettings(kind, path, mapping, read.max_reject_share, pages_file)
