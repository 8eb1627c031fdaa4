"""Funnels & retention: where sessions drop out, how cohorts come back, lifecycle per week."""

import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import funnels, trends

snap, info = ui.snapshot_and_info()

st.title("Funnels & retention")
ui.stale_banner(snap, t.FUNNEL_DAILY, t.FUNNEL_SEGMENTS, t.RETENTION_COHORTS, t.LIFECYCLE_WEEKLY)

st.subheader("Purchase funnel")
if ui.require(info, t.FUNNEL_DAILY, what="The funnel"):
    bounds = trends.trend_days(snap) if info.has(t.DAILY_TRENDS) else None
    start = end = None
    if bounds:
        picked = st.date_input(
            "Sessions starting between",
            value=bounds,
            min_value=bounds[0],
            max_value=bounds[1],
            key="funnel_range",
        )
        if picked:
            start, end = picked if len(picked) == 2 else (picked[0], bounds[1])
    steps = funnels.funnel(snap, start, end)
    if ui.has_rows(steps, "No sessions in the chosen range."):
        left, right = st.columns([3, 2])
        with left:
            st.altair_chart(charts.funnel(steps), width="stretch")
        with right:
            worst = steps.filter(steps["step_order"] > 1).sort("step_conversion").row(0, named=True)
            st.metric(
                "Sessions that purchase",
                f"{steps['overall_conversion'][-1]:.2%}",
                help="Share of sessions entering the funnel that reach the last step.",
                border=True,
            )
            st.metric(
                "Biggest drop-off",
                f"{worst['drop_off']:.0%}",
                help="Share of sessions lost at the weakest step.",
                border=True,
            )
            st.caption(f"Lost before **{worst['step']}**.")
        ui.table(
            steps,
            "funnel",
            column_config={
                "sessions": ui.number("sessions", "%d"),
                "step_conversion": ui.percent("kept from previous step"),
                "overall_conversion": ui.percent("of all sessions"),
                "drop_off": ui.percent("dropped at this step"),
            },
        )
    if info.has(t.FUNNEL_SEGMENTS):
        by_segment = funnels.funnel_by_segment(snap, start, end)
        if by_segment.height:
            st.markdown("**By segment** (sessions reaching each step)")
            ui.table(
                by_segment,
                "funnel_by_segment",
                column_config={"overall_conversion": ui.percent("purchase rate")},
            )

st.subheader("Weekly retention")
if ui.require(info, t.RETENTION_COHORTS, what="The retention heat map"):
    cohorts = funnels.retention(snap)
    if ui.has_rows(cohorts, "No cohorts yet."):
        st.altair_chart(charts.retention_heatmap(cohorts), width="stretch")
        st.caption(
            "Each row is the users first seen in a week; each column, the share of them active "
            "that many weeks later."
        )
        ui.table(cohorts, "retention_cohorts", column_config={"retention": ui.percent("retained")})

st.subheader("Lifecycle")
if ui.require(info, t.LIFECYCLE_WEEKLY, what="The lifecycle chart"):
    states = funnels.lifecycle(snap)
    if ui.has_rows(states, "No weeks yet."):
        st.altair_chart(
            charts.stacked_bars(
                states, x="week_start", y="signed_users", color="state", y_title="users"
            ),
            width="stretch",
        )
        st.caption(
            "New, returning and resurrecting users per week above the axis; users who went "
            "dormant below it. Quick ratio = (new + resurrecting) / dormant."
        )
        ui.table(
            states,
            "lifecycle_weekly",
            column_config={"quick_ratio": ui.number("quick ratio", "%.2f")},
        )
