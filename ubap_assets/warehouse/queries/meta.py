"""The snapshot itself: what it holds, when it was made, its checks and table status."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, first_or_none
from ubap_assets.warehouse.snapshots import TABLE_STATUS, TABLE_STATUS_SCHEMA

# Every table a snapshot may hold: the only names a caller may pass to ``whole_table``.
SNAPSHOT_TABLES = frozenset({*t.SERVING_TABLES, t.SNAPSHOT_META, t.CHECK_RESULTS, TABLE_STATUS})


@dataclass(frozen=True)
class SnapshotMeta:
    snapshot_id: str
    run_id: str | None
    materialized_at: datetime | None
    data_start: date | None
    data_end: date | None
    tables: tuple[str, ...]
    missing_tables: tuple[str, ...]


def contract_table(table: str) -> str:
    """``table`` quoted for SQL, once it is known to be a snapshot table (else ValueError)."""
    if table not in SNAPSHOT_TABLES:
        raise ValueError(f"{table!r} is not a serving table (see ubap_assets/warehouse/tables.py)")
    return f'"{table}"'


class MetaQueries:
    def meta(self: SnapshotAccess) -> SnapshotMeta:
        row: dict[str, Any] = {}
        if self.has_table(t.SNAPSHOT_META):
            row = first_or_none(self.rows(f"SELECT * FROM {t.SNAPSHOT_META} LIMIT 1")) or {}
        missing = row.get("missing_tables") or ""
        return SnapshotMeta(
            snapshot_id=self.snapshot_id,
            run_id=row.get("run_id"),
            materialized_at=row.get("materialized_at")
            or datetime.fromtimestamp(self.path.stat().st_mtime).replace(microsecond=0),
            data_start=row.get("data_start"),
            data_end=row.get("data_end"),
            tables=tuple(sorted(self.tables)),
            missing_tables=tuple(m for m in missing.split(",") if m),
        )

    def check_results(self: SnapshotAccess) -> pl.DataFrame:
        self.require(t.CHECK_RESULTS)
        return self.query(f"SELECT * FROM {t.CHECK_RESULTS} ORDER BY asset_key, check_name")

    def table_status(self: SnapshotAccess) -> pl.DataFrame:
        """One row per served table: refreshed by the publishing run, or the reason it was
        not. Empty for snapshots published before the table existed."""
        if not self.has_table(TABLE_STATUS):
            return pl.DataFrame(schema=TABLE_STATUS_SCHEMA)
        return self.query(f"SELECT * FROM {TABLE_STATUS} ORDER BY refreshed, table_name")

    def whole_table(self: SnapshotAccess, table: str, order_by: str | None = None) -> pl.DataFrame:
        """A whole (small) snapshot table; ``order_by`` is a trusted column list."""
        name = contract_table(table)
        self.require(table)
        return self.query(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else ""))

    def row_counts(self: SnapshotAccess, tables: tuple[str, ...]) -> pl.DataFrame:
        """table_name and rows for each of ``tables``, by name."""
        parts = [
            f"SELECT '{name}' AS table_name, count(*) AS rows FROM {contract_table(name)}"
            for name in tables
        ]
        if not parts:
            return pl.DataFrame(schema={"table_name": pl.String, "rows": pl.Int64})
        return self.query(" UNION ALL ".join(parts) + " ORDER BY table_name")

    def rejects(self: SnapshotAccess, limit: int = 1000) -> tuple[pl.DataFrame, int]:
        """The first ``limit`` rejected input rows and how many there are in all."""
        self.require(t.EVENT_REJECTS)
        rows = self.query(
            f"SELECT * FROM {t.EVENT_REJECTS} ORDER BY source_file, row_number LIMIT ?", [limit]
        )
        return rows, int(self.scalar(f"SELECT count(*) FROM {t.EVENT_REJECTS}"))
