"""Admin insights: what to fix on the site, most severe first, with the numbers behind it."""

import polars as pl
import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import source

snap, info = ui.snapshot_and_info()

st.title("Admin insights")
ui.stale_banner(snap, t.ADMIN_INSIGHTS)
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
SEVERITY_ICON = {
    "high": ":material/error:",
    "medium": ":material/warning:",
    "low": ":material/info:",
}
KIND_LABEL = {
    "high_exit_page": "Pages where visits end",
    "high_bounce_page": "Pages visitors bounce from",
    "funnel_dropoff": "Funnel steps losing people",
    "never_recommended": "Pages never recommended",
    "content_island": "Pages unlike any other",
}

if ui.require(info, t.ADMIN_INSIGHTS, what="The admin insights"):
    insights = (
        source.table(snap, t.ADMIN_INSIGHTS)
        .with_columns(pl.col("severity").replace_strict(SEVERITY_ORDER, default=3).alias("_order"))
        .sort("_order", pl.col("volume").abs(), descending=[False, True])
        .drop("_order")
    )
    if insights.is_empty():
        st.success("No findings: nothing stands out in this snapshot.", icon=":material/check:")
    else:
        counts = insights.group_by("severity").agg(pl.len().alias("n"))
        by_severity = dict(counts.iter_rows())
        top = st.columns(3)
        for column, level in zip(top, SEVERITY_ORDER, strict=True):
            column.metric(f"{level.title()} severity", by_severity.get(level, 0), border=True)

        kinds = (
            insights.group_by("kind")
            .agg(pl.len().alias("findings"))
            .with_columns(
                pl.col("kind").replace_strict(KIND_LABEL, default=pl.col("kind")).alias("what")
            )
        )
        st.altair_chart(
            charts.bars(kinds, category="what", value="findings", value_title="findings"),
            width="stretch",
        )
        chosen = st.multiselect(
            "Severity",
            list(SEVERITY_ORDER),
            default=list(SEVERITY_ORDER),
            key="insight_severity",
        )
        shown = insights.filter(pl.col("severity").is_in(chosen))
        cards = st.columns(2)
        for index, row in enumerate(shown.head(12).iter_rows(named=True)):
            with cards[index % 2].container(border=True):
                st.markdown(
                    f"{SEVERITY_ICON.get(row['severity'], '')} "
                    f"**{row['subject_title'] or row['subject']}** · "
                    f"{KIND_LABEL.get(row['kind'], row['kind'])} · {row['severity']}"
                )
                st.markdown(row["details"])
                st.markdown(f":material/arrow_forward: **{row['suggested_action']}**")
        if shown.height > 12:
            st.caption(f"{shown.height - 12} more in the table below.")
        ui.table(shown, "admin_insights")
