"""Funnels & retention: where sessions drop out over the chosen period (and the one before),
how the funnel converts day by day and by device, traffic source or segment, how cohorts come
back, lifecycle per week."""

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import describe
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import funnels
from ubap_dashboard.period import change_text

snap, info = ui.snapshot_and_info()
period = ui.period()

OF_FIRST = describe("funnel_completion")
STEP = describe("funnel_step_conversion")

st.title("Funnels & retention")
ui.stale_banner(
    snap,
    t.FUNNEL_DAILY,
    t.FUNNEL_DIMENSIONS,
    t.FUNNEL_SEGMENTS,
    t.RETENTION_COHORTS,
    t.LIFECYCLE_WEEKLY,
)

st.subheader("Purchase funnel")
if ui.require(info, t.FUNNEL_DAILY, what="The funnel"):
    start, end = (period.start, period.end) if period else (None, None)
    steps = funnels.funnel(snap, start, end)
    previous = (
        funnels.funnel(snap, period.previous_start, period.previous_end)
        if period and period.compare and period.previous_covered
        else None
    )
    if period:
        st.caption(f"Sessions starting {period.label()}.")
    if ui.has_rows(steps, "No sessions in the chosen range."):
        before = previous if previous is not None and previous.height == steps.height else None
        left, right = st.columns([3, 2])
        with left:
            st.altair_chart(charts.funnel(steps), width="stretch")
        with right:
            worst = steps.filter(steps["step_order"] > 1).sort("step_conversion").row(0, named=True)
            completion = steps["overall_conversion"][-1]
            st.metric(
                "Sessions that purchase (% of first step)",
                f"{completion:.2%}",
                change_text(completion, before["overall_conversion"][-1], True)
                if before is not None
                else None,
                help=OF_FIRST
                + (
                    f" Previous period: {before['overall_conversion'][-1]:.2%}."
                    if before is not None
                    else ""
                ),
                border=True,
            )
            st.metric(
                "Biggest drop-off (of the previous step)",
                f"{worst['drop_off']:.0%}",
                help="Share of sessions lost at the weakest step. " + STEP,
                border=True,
            )
            st.caption(f"Lost before **{worst['step']}**.")
        shown = steps
        if before is not None:
            shown = steps.join(
                before.select(
                    "step_order",
                    previous_sessions="sessions",
                    previous_overall=pl.col("overall_conversion"),
                ),
                on="step_order",
                how="left",
            ).with_columns(
                change_pp=(pl.col("overall_conversion") - pl.col("previous_overall")) * 100
            )
        ui.table(
            shown,
            "funnel",
            column_config={
                "step_order": ui.number("Step", "%d"),
                "step": "Step name",
                "sessions": ui.number("Sessions", "%d"),
                "step_conversion": ui.percent(charts.STEP_RATE, help=STEP),
                "overall_conversion": ui.percent(charts.OF_FIRST_STEP, help=OF_FIRST),
                "drop_off": ui.percent("Dropped at this step (of previous step)"),
                "previous_sessions": ui.number("Sessions (previous period)", "%d"),
                "previous_overall": ui.percent(f"{charts.OF_FIRST_STEP} (previous period)"),
                "change_pp": ui.number(f"Change in {charts.OF_FIRST_STEP} (pp)", "%+.1f pp"),
            },
        )

    over_time = funnels.funnel_over_time(snap, start, end)
    if over_time.height > 1:
        st.markdown("**Funnel conversion over time** (sessions reaching purchase, % of first step)")
        st.altair_chart(
            charts.trend_line(
                over_time.with_columns(segment=pl.lit("all")),
                y_title="purchase, % of first step",
                y_format=charts.PERCENT,
            ),
            width="stretch",
        )

    offered = {
        label: by
        for label, by in funnels.BREAKDOWNS.items()
        if info.has(t.FUNNEL_SEGMENTS if by == "segment" else t.FUNNEL_DIMENSIONS)
    }
    if offered:
        st.markdown("**Funnel breakdown** (each step as a % of that group's first step)")
        label = st.radio(
            "Break the funnel down by",
            list(offered),
            horizontal=True,
            key="funnel_breakdown",
            bind="query-params",  # ?funnel_breakdown=Traffic+source shares the view
        )
        group = label.lower()
        breakdown = funnels.funnel_breakdown(snap, start, end, offered[label])
        if ui.has_rows(breakdown, f"No sessions by {group} in the chosen range."):
            st.altair_chart(charts.funnel_breakdown(breakdown, group_title=group), width="stretch")
            by_group = funnels.funnel_by_group(breakdown)
            ui.table(
                by_group,
                f"funnel_by_{offered[label]}",
                column_config={
                    "group": label,
                    "overall_conversion": ui.percent("Purchase (% of first step)", help=OF_FIRST),
                    **{
                        step: ui.number(f"Sessions: {step.replace('_', ' ')}", "%d")
                        for step in by_group.columns
                        if step not in ("group", "overall_conversion")
                    },
                },
            )
            if offered[label] != "segment":
                st.caption(
                    f"A session takes the {group} of its first event, so the {group}s' "
                    "sessions add up to the whole funnel; the anomaly detector watches each "
                    f"step's conversion per {group}."
                )

st.subheader("Weekly retention")
if ui.require(info, t.RETENTION_COHORTS, what="The retention heat map"):
    cohorts = funnels.retention(snap)
    if ui.has_rows(cohorts, "No cohorts yet."):
        first_cohort = cohorts.filter(pl.col("pre_data"))["cohort_week"].min()
        include = st.toggle(
            "Show the first cohort (includes everyone active before the data starts)",
            value=False,
            key="retention_pre_data",
        )
        shown = cohorts if include else cohorts.filter(~pl.col("pre_data"))
        if shown.height:
            st.altair_chart(charts.retention_heatmap(shown), width="stretch")
        st.caption(
            "Each row is the users first seen in a week; each column, the share of them active "
            f"that many weeks later. The cohort of {first_cohort} "
            + ("is labelled: it " if include else "is left out: it ")
            + "also holds every user who was active before the data starts (their real first "
            "visit is earlier), so it retains better than a true new-user cohort."
        )
        ui.table(
            shown,
            "retention_cohorts",
            column_config={
                "cohort_week": st.column_config.DateColumn("Cohort week", format="YYYY-MM-DD"),
                "weeks_since": ui.number("Weeks since first seen", "%d"),
                "cohort_users": ui.number("Cohort users", "%d"),
                "active_users": ui.number("Active users", "%d"),
                "retention": ui.percent("Retained"),
                "is_complete": "Complete week",
                "pre_data": "Includes pre-data users",
            },
        )

st.subheader("Lifecycle")
if ui.require(info, t.LIFECYCLE_WEEKLY, what="The lifecycle chart"):
    states = funnels.lifecycle(snap)
    if ui.has_rows(states, "No weeks yet."):
        first_week = states.filter(pl.col("first_week"))["week_start"].min()
        plotted = states.with_columns(
            week_start=pl.when(pl.col("first_week"))
            .then(pl.col("week_start").cast(pl.String) + pl.lit(" (new inflated)"))
            .otherwise(pl.col("week_start").cast(pl.String))
        )
        st.altair_chart(
            charts.stacked_bars(
                plotted, x="week_start", y="signed_users", color="state", y_title="users"
            ),
            width="stretch",
        )
        st.caption(
            "New, returning and resurrecting users per week above the axis; users who went "
            "dormant below it. Quick ratio = (new + resurrecting) / dormant. "
            f"The week of {first_week} counts every user as new (the data starts then), so its "
            "new users and quick ratio are inflated."
        )
        ui.table(
            states,
            "lifecycle_weekly",
            column_config={
                "week_start": st.column_config.DateColumn("Week of", format="YYYY-MM-DD"),
                "signed_users": ui.number("Users (dormant negative)", "%d"),
                "quick_ratio": ui.number("Quick ratio", "%.2f"),
                "is_complete": "Complete week",
                "first_week": "First week of data (new inflated)",
            },
        )
