"""Trends: any metric, daily or weekly, over a date range, broken down by device or source."""

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, trends

snap, info = ui.snapshot_and_info()

st.title("Trends")
ui.stale_banner(snap, t.DAILY_TRENDS, t.WEEKLY_TRENDS, t.INCIDENTS)

if ui.require(info, t.DAILY_TRENDS, t.WEEKLY_TRENDS, what="The trends page"):
    bounds = trends.trend_days(snap)
    if bounds is None:
        st.info("The trends tables hold no days yet.")
        st.stop()
    first, last = bounds
    top = st.columns(2)
    metric = ui.pick_trend_metric(top[0], "trend_metric")
    picked = top[1].date_input(
        "Date range", value=(first, last), min_value=first, max_value=last, key="trend_range"
    )
    bottom = st.columns(2)
    grain = bottom[0].segmented_control(
        "Grain", ["daily", "weekly"], default="daily", required=True, key="trend_grain"
    )
    breakdown = bottom[1].segmented_control(
        "Breakdown",
        list(trends.BREAKDOWNS),
        format_func=trends.BREAKDOWNS.get,
        default="all",
        required=True,
        key="trend_breakdown",
    )
    # The range picker returns one date while the second is being picked.
    start, end = (picked if len(picked) == 2 else (picked[0], last)) if picked else (first, last)

    series = trends.trend_series(snap, metric, grain, breakdown, start, end)
    label = TREND_METRICS[metric]
    if ui.has_rows(series, "No data in the chosen range."):
        windows = (
            anomalies.incident_windows(snap, metric, start, end)
            if info.has(t.INCIDENTS)
            else pl.DataFrame()
        )
        chart = charts.trend_line(
            series,
            color=None if breakdown == "all" else "segment",
            y_title=label,
            y_format=charts.metric_format(metric),
        )
        st.altair_chart(charts.annotate_incidents(chart, windows), width="stretch")
        partial = series.filter(~series["is_complete"]).height
        st.caption(
            f"{label} per {'day' if grain == 'daily' else 'ISO week (Monday start)'}"
            + (f", by {trends.BREAKDOWNS[breakdown].lower()}" if breakdown != "all" else "")
            + (f". {partial} point(s) cover an incomplete period." if partial else ".")
            + (f" {anomalies.incident_note(windows, label)}" if windows.height else "")
        )

    st.subheader("All metrics")
    ui.table(
        trends.trend_table(snap, grain, breakdown, start, end),
        f"{grain}_trends_{breakdown}",
        column_config={
            "conversion_rate": ui.percent("conversion rate"),
            "bounce_rate": ui.percent("bounce rate"),
            "revenue": st.column_config.NumberColumn("revenue", format="dollar"),
            "mean_session_duration_s": ui.number("mean session (s)", "%.0f"),
            "pages_per_session": ui.number("pages / session", "%.2f"),
        },
    )
