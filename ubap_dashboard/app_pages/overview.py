"""Overview: the headline KPIs against the previous period, the summary and the daily trend."""

from datetime import timedelta

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, source, trends

snap, info = ui.snapshot_and_info()

st.title("Overview")
ui.stale_banner(snap, t.DAILY_TRENDS, t.INCIDENTS, t.ANOMALIES, t.SUMMARY)

if ui.require(info, t.DAILY_TRENDS, what="The KPIs and the daily trend"):
    period = trends.kpis(snap)
    if period is None:
        st.info("The trends hold no complete day yet.")
    else:
        st.caption(
            f"Last 7 complete days, {period.start} → {period.end}"
            + (
                f"; deltas against {period.previous_start} → {period.start - timedelta(days=1)}"
                if period.previous_start
                else "; no earlier period to compare with"
            )
        )
        columns = st.columns(len(period.kpis))
        for column, kpi in zip(columns, period.kpis, strict=True):
            with column:
                ui.kpi(kpi)

period = trends.kpis(snap) if info.has(t.DAILY_TRENDS) else None
if info.has(t.INCIDENTS) and period is not None:  # what broke lately, as incidents
    recent = anomalies.recent_incidents(snap, period.start)
    if recent.height:
        lines = [
            f"- **{row['headline_label']}** ({row['severity']}"
            + (", ongoing" if row["ongoing"] else "")
            + f"): {row['description']}"
            for row in recent.head(3).iter_rows(named=True)
        ]
        st.warning(
            f"{recent.height} incident(s) in the last 7 days — see the Anomalies page.\n\n"
            + "\n".join(lines),
            icon=":material/warning:",
        )
elif info.has(t.ANOMALIES):
    recent = anomalies.latest_anomalies(snap)
    if recent.height:
        flagged = recent.filter(recent["dimension"] == "all")
        top = (flagged if flagged.height else recent).head(3)
        lines = [
            f"- **{row['metric']}** on {row['day']} ({row['dimension_value']}): "
            f"a {row['direction']} to {row['value']:,.3g} "
            f"against an expected {row['expected']:,.3g}"
            for row in top.iter_rows(named=True)
        ]
        st.warning(
            f"{recent.height} anomalies flagged in the latest days — see the Anomalies page.\n\n"
            + "\n".join(lines),
            icon=":material/warning:",
        )

st.subheader("Summary")
if ui.require(info, t.SUMMARY, what="The summary"):
    summary = source.table(snap, t.SUMMARY, "generated_at DESC")
    if ui.has_rows(summary, "The summary table is empty."):
        row = summary.row(0, named=True)
        label = (
            f"written by {row['model']}"
            if row["mode"] == "llm"
            else "deterministic summary (no LLM)"
        )
        with st.container(border=True):
            st.markdown(row["narrative"])
            st.caption(f"{row['period_start']} → {row['period_end']} · {label}")

st.subheader("Daily trend")
if info.has(t.DAILY_TRENDS):
    left, right = st.columns(2)
    with left:
        metric = ui.pick_trend_metric(st, "overview_metric")
    series = trends.trend_series(snap, metric)
    windows = anomalies.incident_windows(snap, metric) if info.has(t.INCIDENTS) else pl.DataFrame()
    chart = charts.trend_line(
        series, y_title=TREND_METRICS[metric], y_format=charts.metric_format(metric)
    )
    st.altair_chart(charts.annotate_incidents(chart, windows), width="stretch")
    with right:
        st.caption(
            "Every day in the data, all users. Partial days are included and marked "
            "`is_complete = false` in the table below."
            + (
                f" {anomalies.incident_note(windows, TREND_METRICS[metric])}"
                if windows.height
                else ""
            )
        )
    with st.expander("The numbers"):
        ui.table(series.drop("segment"), f"daily_{metric}")
