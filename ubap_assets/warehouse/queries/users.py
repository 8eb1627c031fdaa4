"""One user or page: the rows behind the user and page lookups."""

from typing import Any

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, first_or_none


class UserQueries:
    def user(self: SnapshotAccess, user_id: str) -> dict[str, Any] | None:
        self.require(t.USERS)
        return first_or_none(self.keyed(t.USERS, "user_id").rows(user_id).to_dicts())

    def page(self: SnapshotAccess, page_id: str) -> dict[str, Any] | None:
        self.require(t.PAGES)
        return first_or_none(self.keyed(t.PAGES, "page_id").rows(page_id).to_dicts())

    def user_profile(self: SnapshotAccess, user_id: str) -> dict[str, Any] | None:
        """The users row with segment_name and the two probabilities, where those tables
        exist (None for an unknown user or without a users table)."""
        if not self.has_table(t.USERS):
            return None
        columns, joins = ["u.*"], []
        if self.has_table(t.USER_SEGMENTS):
            columns.append("s.segment_name")
            joins.append(f"LEFT JOIN {t.USER_SEGMENTS} s USING (user_id)")
        if self.has_table(t.USER_PREDICTIONS):
            columns += ["p.conversion_probability", "p.at_risk_probability"]
            joins.append(f"LEFT JOIN {t.USER_PREDICTIONS} p USING (user_id)")
        return first_or_none(
            self.rows(
                f"SELECT {', '.join(columns)} FROM {t.USERS} u {' '.join(joins)} "
                "WHERE u.user_id = ?",
                [user_id],
            )
        )

    def recent_activity(self: SnapshotAccess, user_id: str, limit: int = 20) -> pl.DataFrame:
        """The user's latest events, newest first, with the page title."""
        self.require(t.EVENTS)
        title = "p.title" if self.has_table(t.PAGES) else "NULL::VARCHAR"
        join = f"LEFT JOIN {t.PAGES} p USING (page_id)" if self.has_table(t.PAGES) else ""
        return self.query(
            f"SELECT e.event_ts, e.event_type, e.page_id, {title} AS page_title, e.session_id, "
            f"e.device, e.revenue FROM {t.EVENTS} e {join} WHERE e.user_id = ? "
            "ORDER BY e.event_ts DESC, e.event_id DESC LIMIT ?",
            [user_id, limit],
        )
