"""Exceptions of the file ingestion (Dagster-free)."""

from typing import Any


class IngestError(Exception):
    """Ingestion cannot go on: the message names the problem and the fix.

    ``result`` carries the partial IngestResult (with its rejects) when the rejects exceeded the
    allowed share, so a caller can still publish the rejects table before failing.
    """

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class MappingError(ValueError):
    """A mapping (built-in name, file or content) is invalid."""


class SourceSettingsError(ValueError):
    """An environment variable of the source setting is invalid."""
