"""Funnels, cohort retention and the weekly lifecycle."""

from datetime import date

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, Where, select_where

# The breakdowns of funnel_dimensions (its 'all' rows repeat funnel_daily).
FUNNEL_BREAKDOWNS: tuple[str, ...] = ("device", "traffic_source")


class FunnelQueries:
    def funnel_daily(
        self: SnapshotAccess,
        start: date | None = None,
        end: date | None = None,
        segment_id: str | None = None,
    ) -> pl.DataFrame:
        """funnel_daily (or funnel_segments rows of one segment), by day then step."""
        where = Where().between("day", start, end)
        if segment_id is None or segment_id == "all":
            table = t.FUNNEL_DAILY
        else:
            table = t.FUNNEL_SEGMENTS
            where.equals(segment_id=segment_id)
        return select_where(self, table, where, "day, step_index")

    def funnel_segment_ids(self: SnapshotAccess) -> frozenset[str]:
        """Segment ids present in funnel_segments."""
        self.require(t.FUNNEL_SEGMENTS)
        found = self.rows(f"SELECT DISTINCT segment_id FROM {t.FUNNEL_SEGMENTS}")
        return frozenset(str(r["segment_id"]) for r in found)

    def funnel(
        self, start: date | None = None, end: date | None = None, segment_id: str | None = None
    ) -> pl.DataFrame:
        """The funnel over [start, end]: sessions per step summed over days, rates recomputed.

        drop_off counts the sessions lost at a step, drop_off_rate is their share.
        """
        daily = self.funnel_daily(start, end, segment_id)  # type: ignore[attr-defined]
        steps = (
            daily.group_by("step_index", "step").agg(pl.col("sessions").sum()).sort("step_index")
        )
        sessions = [int(n) for n in steps["sessions"]]
        prev = [None, *sessions[:-1]] if sessions else []
        step_conv = [
            1.0 if p is None else (n / p if p else 0.0) for n, p in zip(sessions, prev, strict=True)
        ]
        return steps.with_columns(
            pl.Series("step_conversion", step_conv, dtype=pl.Float64),
            pl.Series(
                "overall_conversion",
                [n / sessions[0] if sessions[0] else 0.0 for n in sessions],
                dtype=pl.Float64,
            ),
            pl.Series(
                "drop_off",
                [0 if p is None else p - n for n, p in zip(sessions, prev, strict=True)],
                dtype=pl.Int64,
            ),
            pl.Series("drop_off_rate", [1.0 - c for c in step_conv], dtype=pl.Float64),
        )

    def funnel_steps_by_segment(
        self: SnapshotAccess, start: date | None = None, end: date | None = None
    ) -> pl.DataFrame:
        """Per segment name and step: the sessions over [start, end] (segment, step_order,
        step, sessions), by segment then step."""
        self.require(t.FUNNEL_SEGMENTS)
        where = Where().between("day", start, end)
        return self.query(
            "SELECT segment_name AS segment, step_index AS step_order, step, "
            f"sum(sessions)::BIGINT AS sessions FROM {t.FUNNEL_SEGMENTS} WHERE {where.sql} "
            "GROUP BY ALL ORDER BY segment, step_order",
            where.params,
        )

    def funnel_steps_by_dimension(
        self: SnapshotAccess,
        dimension: str,
        start: date | None = None,
        end: date | None = None,
    ) -> pl.DataFrame:
        """Per value of ``dimension`` (``device`` or ``traffic_source``) and step: the sessions
        over [start, end] (value, step_order, step, sessions), by value then step."""
        self.require(t.FUNNEL_DIMENSIONS)
        if dimension not in FUNNEL_BREAKDOWNS:
            raise ValueError(
                f"funnel dimension must be one of {FUNNEL_BREAKDOWNS} (got {dimension!r})"
            )
        where = Where().between("day", start, end).equals(dimension=dimension)
        return self.query(
            "SELECT dimension_value AS value, step_index AS step_order, step, "
            f"sum(sessions)::BIGINT AS sessions FROM {t.FUNNEL_DIMENSIONS} WHERE {where.sql} "
            "GROUP BY ALL ORDER BY value, step_order",
            where.params,
        )

    def retention_cohorts(
        self: SnapshotAccess, start: date | None = None, end: date | None = None
    ) -> pl.DataFrame:
        """retention_cohorts with cohort_week in [start, end], by cohort then weeks_since."""
        where = Where().between("cohort_week", start, end)
        return select_where(self, t.RETENTION_COHORTS, where, "cohort_week, weeks_since")

    def lifecycle_weekly(
        self: SnapshotAccess, start: date | None = None, end: date | None = None
    ) -> pl.DataFrame:
        """lifecycle_weekly with week_start in [start, end]."""
        where = Where().between("week_start", start, end)
        return select_where(self, t.LIFECYCLE_WEEKLY, where, "week_start, state")
