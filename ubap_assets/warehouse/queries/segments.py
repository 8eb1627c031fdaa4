"""User segments: profiles, a user's segment, and sampled users for the map."""

from typing import Any

import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.queries.base import SnapshotAccess, first_or_none


class SegmentQueries:
    def segment_profiles(self: SnapshotAccess) -> pl.DataFrame:
        """segment_profiles, largest segment first."""
        self.require(t.SEGMENT_PROFILES)
        return self.query(f"SELECT * FROM {t.SEGMENT_PROFILES} ORDER BY users DESC, segment_id")

    def user_segment(self: SnapshotAccess, user_id: str) -> dict[str, Any] | None:
        """The user's user_segments row (None if unsegmented or the table is absent)."""
        if not self.has_table(t.USER_SEGMENTS):
            return None
        return first_or_none(self.keyed(t.USER_SEGMENTS, "user_id").rows(user_id).to_dicts())

    def segmented_user_features(self: SnapshotAccess, sample: int, seed: int) -> pl.DataFrame:
        """A pseudo-random sample of users: user_features columns and the segment name
        (``segment``); the same ``seed`` draws the same users."""
        self.require(t.USER_FEATURES, t.USER_SEGMENTS)
        return self.query(
            f"SELECT f.*, s.segment_name AS segment FROM {t.USER_FEATURES} f "
            f"JOIN {t.USER_SEGMENTS} s USING (user_id) "
            "ORDER BY hash(f.user_id || ?::VARCHAR) LIMIT ?",
            [str(seed), sample],
        )
