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

    def segment_scores(self: SnapshotAccess) -> dict[str, Any]:
        """The segments scored against the generator's personas: persona_ari (null without
        ground truth), users_scored and a note; {} where the snapshot has no scores."""
        if not self.has_table(t.SEGMENT_SCORES):
            return {}
        return first_or_none(self.query(f"SELECT * FROM {t.SEGMENT_SCORES}").to_dicts()) or {}

    def user_segment(self: SnapshotAccess, user_id: str) -> dict[str, Any] | None:
        """The user's user_segments row (None if unsegmented or the table is absent)."""
        if not self.has_table(t.USER_SEGMENTS):
            return None
        return first_or_none(self.keyed(t.USER_SEGMENTS, "user_id").rows(user_id).to_dicts())

    def user_map(self: SnapshotAccess, sample: int | None = None, seed: int = 7) -> pl.DataFrame:
        """The pipeline's 2-D map of users (user_id, segment_id, segment_name, x, y): the PCA
        of the clustering features. ``sample`` keeps that many of its users, drawn by a hash
        of the user id and ``seed`` (the same users each time)."""
        self.require(t.USER_MAP)
        if sample is None:
            return self.query(f"SELECT * FROM {t.USER_MAP} ORDER BY user_id")
        return self.query(
            f"SELECT * FROM {t.USER_MAP} ORDER BY hash(user_id || ?::VARCHAR) LIMIT ?",
            [str(seed), sample],
        )
