"""Trends: any metric, daily or weekly, over the chosen period (and the one before), broken
down by device or source."""

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, trends

snap, info = ui.snapshot_and_info()
period = ui.period()

st.title("Trends")
ui.stale_banner(snap, t.DAILY_TRENDS, t.WEEKLY_TRENDS, t.INCIDENTS)

if ui.require(info, t.DAILY_TRENDS, t.WEEKLY_TRENDS, what="The trends page"):
    if period is None:
        st.info("The trends tables hold no days yet.")
        st.stop()
    top = st.columns(3)
    metric = ui.pick_trend_metric(top[0], "trend_metric")
    grain = top[1].segmented_control(
        "Grain", ["daily", "weekly"], default="daily", required=True, key="trend_grain"
    )
    breakdown = top[2].segmented_control(
        "Breakdown",
        list(trends.BREAKDOWNS),
        format_func=trends.BREAKDOWNS.get,
        default="all",
        required=True,
        key="trend_breakdown",
    )
    start, end = period.start, period.end
    label = TREND_METRICS[metric]
    legend = trends.BREAKDOWNS[breakdown].lower()

    compared = trends.comparison(
        snap, metric, breakdown, (start, end), (period.previous_start, period.previous_end)
    )
    if period.compare and compared.height:
        shown = compared.head(6)
        cards = st.columns(3) if shown.height <= 3 else [*st.columns(3), *st.columns(3)]
        for slot, row in zip(cards, shown.iter_rows(named=True), strict=False):
            with slot:
                title = label if breakdown == "all" else f"{label}: {row['segment']}"
                ui.metric_card(title, metric, row["value"], row["previous"])

    series = trends.trend_series(snap, metric, grain, breakdown, start, end)
    if ui.has_rows(series, "No data in the chosen range."):
        windows = (
            anomalies.incident_windows(snap, metric, start, end)
            if info.has(t.INCIDENTS)
            else pl.DataFrame()
        )
        before = (
            trends.previous_series(snap, metric, grain, breakdown, period)
            if period.compare
            else None
        )
        chart = charts.trend_line(
            series,
            color=None if breakdown == "all" else "segment",
            color_title=legend,
            y_title=label,
            y_format=charts.metric_format(metric),
            weekly=grain == "weekly",
            previous=before,
        )
        st.altair_chart(charts.annotate_incidents(chart, windows, start), width="stretch")
        partial = series.filter(~series["is_complete"]).height
        st.caption(
            f"{label} per {'day' if grain == 'daily' else 'ISO week (Monday start)'}"
            + (f", by {legend}" if breakdown != "all" else "")
            + f", {period.label()}"
            + (
                f"; the previous period ({period.previous_label()}) dashed"
                if before is not None and before.height
                else ""
            )
            + (f". {partial} point(s) cover an incomplete period." if partial else ".")
            + (f" {anomalies.incident_note(windows, label)}" if windows.height else "")
        )
        if period.compare and compared["previous"].is_not_null().any():
            is_rate = charts.metric_format(metric) == charts.PERCENT
            # a rate's change in percentage points, a count's or money's in the metric's unit
            table = compared.drop("days").rename({"segment": breakdown})
            if is_rate:
                table = table.with_columns(pl.col("change") * 100)
            ui.table(
                table,
                f"{metric}_comparison_{breakdown}",
                column_config={
                    breakdown: trends.BREAKDOWNS[breakdown],
                    **{
                        column: ui.trend_columns([metric])[metric] | {"label": text}
                        for column, text in (
                            ("value", f"{label} (this period)"),
                            ("previous", f"{label} (previous period)"),
                        )
                    },
                    "change": st.column_config.NumberColumn(
                        "Change (pp)" if is_rate else "Change",
                        format="%+.1f pp" if is_rate else None,
                    ),
                },
            )

    st.subheader("All metrics")
    rows = trends.trend_table(snap, grain, breakdown, start, end)
    ui.table(
        rows.drop("dimension", "dimension_value") if breakdown == "all" else rows,
        f"{grain}_trends_{breakdown}",
        column_config={
            "day": st.column_config.DateColumn("Day", format="YYYY-MM-DD"),
            "week_start": st.column_config.DateColumn("Week of", format="YYYY-MM-DD"),
            "dimension": "Breakdown",
            "dimension_value": trends.BREAKDOWNS[breakdown],
            "is_complete": "Complete period",
            **ui.trend_columns(rows.columns),
        },
    )
