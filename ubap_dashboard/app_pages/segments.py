"""Segments: who the users are — profiles, sizes, trends and a map of users by segment."""

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS, describe
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import segments

snap, info = ui.snapshot_and_info()

st.title("Segments")
ui.stale_banner(snap, t.SEGMENT_PROFILES, t.SEGMENT_TRENDS, t.USER_MAP)

if ui.require(info, t.SEGMENT_PROFILES, what="The segment profiles"):
    profiles = segments.segment_profiles(snap)
    if ui.has_rows(profiles, "No segments in this snapshot."):
        first = profiles.row(0, named=True)
        quality = st.columns(4)
        quality[0].metric("Segments (k)", f"{first['k']}", border=True)
        quality[1].metric(
            "Silhouette",
            f"{first['silhouette']:.2f}",
            help="How well separated the segments are (-1..1, higher is better).",
            border=True,
        )
        quality[2].metric(
            "Davies–Bouldin",
            f"{first['davies_bouldin']:.2f}",
            help="Average similarity of each segment to its closest one (lower is better).",
            border=True,
        )
        scores = segments.segment_scores(snap)
        ui.optional_metric(
            quality[3],
            "Persona recovery (ARI)",
            scores.get("persona_ari"),
            ".2f",
            help="Adjusted Rand index against the generator's hidden personas (synthetic only). "
            + (scores.get("note") or ""),
        )

        left, right = st.columns([2, 3])
        with left:
            st.markdown("**Size**")
            st.altair_chart(
                charts.bars(profiles, category="segment_name", value="users", value_title="users"),
                width="stretch",
            )
        with right:
            st.markdown("**Buyer share**", help=describe("buyer_share"))
            st.altair_chart(
                charts.bars(
                    profiles,
                    category="segment_name",
                    value="buyer_share",
                    value_title="users with a purchase",
                    value_format=charts.PERCENT,
                ),
                width="stretch",
            )
        st.subheader("Profiles")
        st.caption("Mean of each feature over the segment's users (original units).")
        ui.table(
            profiles.drop("run_id", strict=False),
            "segment_profiles",
            column_config={
                "share": ui.percent("share of users"),
                "buyer_share": ui.percent("buyer share", help=describe("buyer_share")),
                "bounce_rate": ui.percent("bounce rate", help=describe("bounce_rate")),
                "product_share": ui.percent("product share"),
                "blog_share": ui.percent("blog share"),
                "help_share": ui.percent("help share"),
            },
        )

st.subheader("Segment trends")
if ui.require(info, t.SEGMENT_TRENDS, what="The segment trends"):
    metric = ui.pick_trend_metric(st, "segment_metric")
    trend = segments.segment_trend(snap, metric)
    if ui.has_rows(trend, "The segment trends have only the all-users series so far."):
        st.altair_chart(
            charts.trend_line(
                trend,
                color="segment",
                y_title=TREND_METRICS[metric],
                y_format=charts.metric_format(metric),
            ),
            width="stretch",
        )
        ui.table(trend, f"segment_trends_{metric}")

st.subheader("Map of users")
if ui.require(info, t.USER_MAP, what="The map of users"):
    points = segments.user_map(snap)
    if ui.has_rows(points, "Too few users to draw the map."):
        st.altair_chart(charts.segment_map(points), width="stretch")
        st.caption(
            f"{points.height:,} users (a sample drawn by the pipeline) on the first two principal "
            "components of the log-scaled, standardised features the segments were clustered "
            "on, coloured by segment."
        )
        counts = points.group_by("segment").agg(pl.len().alias("users")).sort("segment")
        ui.table(points, "user_map_sample", height=240, caption=f"{counts.height} segments shown.")
