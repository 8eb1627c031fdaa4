"""Recommendations: per-user lists, similar pages, their evaluation and the admin insights."""

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, Where, select_where


class RecommendationQueries:
    def user_recommendations(
        self: SnapshotAccess, user_id: str, limit: int | None = 10
    ) -> pl.DataFrame:
        """The user's recommended pages, best first (all of them with ``limit=None``; empty
        for an unknown user)."""
        self.require(t.USER_RECOMMENDATIONS)
        found = self.keyed(t.USER_RECOMMENDATIONS, "user_id", ("rank",)).rows(user_id)
        return found if limit is None else found.head(limit)

    def users_with_recommendations(self: SnapshotAccess, limit: int = 200) -> list[str]:
        """Users worth looking up first: most personalised (hybrid) recommendations first."""
        self.require(t.USER_RECOMMENDATIONS)
        found = self.rows(
            f"SELECT user_id FROM {t.USER_RECOMMENDATIONS} GROUP BY user_id "
            "ORDER BY count(*) FILTER (source = 'hybrid') DESC, user_id LIMIT ?",
            [limit],
        )
        return [row["user_id"] for row in found]

    def similar_pages(self: SnapshotAccess, page_id: str, limit: int = 10) -> pl.DataFrame:
        """Pages most similar to page_id, most similar first."""
        self.require(t.SIMILAR_PAGES)
        return self.keyed(t.SIMILAR_PAGES, "page_id", ("rank",)).rows(page_id).head(limit)

    def pages_with_neighbours(self: SnapshotAccess) -> pl.DataFrame:
        """page_id, title and category of the pages that have similar pages, by category."""
        self.require(t.SIMILAR_PAGES, t.PAGES)
        return self.query(
            f"SELECT DISTINCT s.page_id, p.title, p.category FROM {t.SIMILAR_PAGES} s "
            f"JOIN {t.PAGES} p USING (page_id) ORDER BY p.category, p.title"
        )

    def similar_pages_with_category(self: SnapshotAccess, page_id: str) -> pl.DataFrame:
        """Every neighbour of page_id with its category, most similar first."""
        self.require(t.SIMILAR_PAGES, t.PAGES)
        return self.query(
            "SELECT s.rank, s.similar_page_id, s.similar_title, p.category, s.similarity, "
            f"s.same_category FROM {t.SIMILAR_PAGES} s "
            f"LEFT JOIN {t.PAGES} p ON p.page_id = s.similar_page_id "
            "WHERE s.page_id = ? ORDER BY s.rank",
            [page_id],
        )

    def admin_insights(
        self: SnapshotAccess, kind: str | None = None, severity: str | None = None
    ) -> pl.DataFrame:
        """admin_insights, high severity first, then by volume."""
        where = Where().equals(kind=kind, severity=severity)
        high_first = "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END"
        return select_where(self, t.ADMIN_INSIGHTS, where, f"{high_first}, volume DESC, insight_id")

    def rec_evaluation(self: SnapshotAccess) -> pl.DataFrame:
        """rec_evaluation, best test NDCG@k first (methods without figures last)."""
        self.require(t.REC_EVALUATION)
        return self.query(
            f"SELECT * FROM {t.REC_EVALUATION} ORDER BY ndcg_at_k DESC NULLS LAST, method"
        )
