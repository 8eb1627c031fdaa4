"""Model scores per user, the scored lists, and the models' metrics, curves and cards."""

from typing import Any, Literal

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, Where, first_or_none, select_where

# user_predictions' reason columns for the at-risk task (the bounce model's reasons).
AT_RISK_REASONS: tuple[str, ...] = ("at_risk_reason_1", "at_risk_reason_2", "at_risk_reason_3")


def _predictions_with_segment(reader: SnapshotAccess) -> str:
    if reader.has_table(t.USER_SEGMENTS):
        return (
            f"SELECT p.*, CAST(s.segment_id AS BIGINT) AS segment_id, s.segment_name "
            f"FROM {t.USER_PREDICTIONS} p LEFT JOIN {t.USER_SEGMENTS} s USING (user_id)"
        )
    return (
        "SELECT p.*, NULL::BIGINT AS segment_id, NULL::VARCHAR AS segment_name "
        f"FROM {t.USER_PREDICTIONS} p"
    )


def _scored_page(
    reader: SnapshotAccess, where: Where, rank: str, limit: int, offset: int
) -> tuple[pl.DataFrame, int]:
    # Paged in SQL: a request materializes one page, not every scored user.
    reader.require(t.USER_PREDICTIONS)
    total = reader.scalar(
        f"SELECT count(*) FROM {t.USER_PREDICTIONS} WHERE {where.sql}", where.params
    )
    page = reader.query(
        f"SELECT * FROM ({_predictions_with_segment(reader)}) WHERE {where.sql} "
        f"ORDER BY {rank}, user_id LIMIT ? OFFSET ?",
        [*where.params, limit, offset],
    )
    return page, int(total)


def _any_values(reader: SnapshotAccess, columns: dict[str, str]) -> dict[str, str]:
    """{key: a non-null value of the column} over user_predictions, for the columns it has."""
    reader.require(t.USER_PREDICTIONS)
    present = set(reader.query(f"SELECT * FROM {t.USER_PREDICTIONS} LIMIT 0").columns)
    wanted = {key: column for key, column in columns.items() if column in present}
    if not wanted:
        return {}
    found = reader.rows(
        "SELECT "
        + ", ".join(f'any_value("{column}") AS "{key}"' for key, column in wanted.items())
        + f" FROM {t.USER_PREDICTIONS}"
    )
    return {k: v for k, v in found[0].items() if v} if found else {}


class PredictionQueries:
    def user_prediction(self: SnapshotAccess, user_id: str) -> dict[str, Any] | None:
        """The user's user_predictions row (None if not scored or the table is absent), with
        ``at_risk_reasons``: the bounce model's reasons as one list."""
        if not self.has_table(t.USER_PREDICTIONS):
            return None
        row = first_or_none(self.keyed(t.USER_PREDICTIONS, "user_id").rows(user_id).to_dicts())
        if row is not None:
            row["at_risk_reasons"] = [r for c in AT_RISK_REASONS if (r := row.get(c))]
        return row

    def high_value_users(
        self: SnapshotAccess, min_probability: float = 0.0, limit: int = 100, offset: int = 0
    ) -> tuple[pl.DataFrame, int]:
        """One page of user_predictions (+ segment) by conversion_rank, probability >=
        min_probability, and how many users match in all."""
        where = Where().also("conversion_probability >= ?", min_probability)
        return _scored_page(self, where, "conversion_rank", limit, offset)

    def at_risk_users(
        self: SnapshotAccess,
        min_probability: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[pl.DataFrame, int]:
        """One page of users flagged at_risk (or at_risk_probability >= min_probability),
        riskiest first, and how many users match in all."""
        if min_probability is None:
            where = Where().also("at_risk")
        else:
            where = Where().also("at_risk_probability >= ?", min_probability)
        return _scored_page(self, where, "at_risk_rank", limit, offset)

    def scored_list(self, kind: Literal["high_value", "at_risk"], limit: int = 100) -> pl.DataFrame:
        """The first ``limit`` users of the high-value or at-risk list, with the segment."""
        if kind == "high_value":
            return self.high_value_users(limit=limit)[0]  # type: ignore[attr-defined]
        if kind == "at_risk":
            return self.at_risk_users(limit=limit)[0]  # type: ignore[attr-defined]
        raise ValueError(f"unknown list {kind!r}: use 'high_value' or 'at_risk'")

    def segment_predictions(self: SnapshotAccess) -> pl.DataFrame:
        """Per segment: users, mean conversion and at-risk probability, at-risk users/share."""
        self.require(t.USER_PREDICTIONS, t.USER_SEGMENTS)
        return self.query(
            "SELECT CAST(s.segment_id AS BIGINT) AS segment_id, any_value(s.segment_name) "
            "AS segment_name, count(*) AS users, "
            "avg(p.conversion_probability) AS mean_conversion_probability, "
            "avg(p.at_risk_probability) AS mean_at_risk_probability, "
            "count(*) FILTER (p.at_risk) AS at_risk_users, "
            "count(*) FILTER (p.at_risk) / count(*) AS at_risk_share, "
            "sum(p.conversion_probability) AS expected_converters "
            f"FROM {t.USER_PREDICTIONS} p JOIN {t.USER_SEGMENTS} s USING (user_id) "
            "GROUP BY s.segment_id ORDER BY users DESC, segment_id"
        )

    def prediction_notes(self: SnapshotAccess) -> dict[str, str]:
        """Why a task serves no scores: {'conversion' | 'bounce': note}, only for such tasks
        ({} when both are scored, or for a snapshot older than the notes)."""
        return _any_values(self, {"conversion": "conversion_note", "bounce": "bounce_note"})

    def reason_methods(self: SnapshotAccess) -> dict[str, str]:
        """How each task's reasons were computed: {'conversion' | 'bounce': method}, for the
        tasks that are scored."""
        columns = {"conversion": "conversion_reason_method", "bounce": "at_risk_reason_method"}
        return _any_values(self, columns)

    def scoring_models(self: SnapshotAccess) -> dict[str, str]:
        """The models behind user_predictions: {'conversion': name, 'bounce': name}."""
        self.require(t.USER_PREDICTIONS)
        found = self.rows(
            f"SELECT any_value(conversion_model) AS conversion, any_value(bounce_model) AS bounce "
            f"FROM {t.USER_PREDICTIONS}"
        )
        return {k: v for k, v in found[0].items() if v is not None} if found else {}

    def model_metrics(
        self: SnapshotAccess, task: str | None = None, split: str | None = None
    ) -> pl.DataFrame:
        """model_metrics rows (optionally one task, one split: 'validation' or 'test'); within
        a task the test window first, the model in service first, then by PR-AUC."""
        where = Where().equals(task=task or None, split=split or None)
        return select_where(
            self,
            t.MODEL_METRICS,
            where,
            "task, split = 'test' DESC, is_best DESC, pr_auc DESC NULLS LAST, model",
        )

    def model_curves(self: SnapshotAccess, task: str, curve: str) -> pl.DataFrame:
        """One curve (e.g. 'roc', 'pr') of every model of ``task``, point by point."""
        self.require(t.MODEL_CURVES)
        return self.query(
            f"SELECT model, point, x, y, threshold FROM {t.MODEL_CURVES} "
            "WHERE task = ? AND curve = ? ORDER BY model, point",
            [task, curve],
        )

    def model_cards(self: SnapshotAccess, task: str) -> pl.DataFrame:
        """The model cards of ``task``, the chosen model first."""
        self.require(t.MODEL_CARDS)
        return self.query(
            f"SELECT * FROM {t.MODEL_CARDS} WHERE task = ? ORDER BY is_best DESC, model", [task]
        )
