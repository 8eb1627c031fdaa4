"""Overview: the headline KPIs of the chosen period against the one before, the summary and
the daily trend."""

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS
from ubap_assets.core.summary import DETERMINISTIC_LABEL
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, source, trends

snap, info = ui.snapshot_and_info()
period = ui.period()

st.title("Overview")
ui.stale_banner(snap, t.DAILY_TRENDS, t.INCIDENTS, t.ANOMALIES, t.SUMMARY)

kpis = None
if ui.require(info, t.DAILY_TRENDS, what="The KPIs and the daily trend") and period:
    previous = (period.previous_start, period.previous_end) if period.compare else None
    kpis = trends.period_kpis(snap, period.start, period.end, previous)
    if kpis is None:
        st.info("The chosen range holds no complete day.")
    else:
        st.caption(
            f"Complete days {kpis.start} → {kpis.end}"
            + (
                f"; changes against {period.previous_start} → {period.previous_end}"
                " (rates in percentage points, counts and money in percent)"
                if kpis.previous_start
                else "; the data does not cover the previous period: no changes shown"
                if period.compare
                else ""
            )
        )
        # two rows of three: each card's label and value read in full
        columns = [*st.columns(3), *st.columns(3)]
        for column, kpi in zip(columns, kpis.kpis, strict=False):
            with column:
                ui.kpi(kpi, compare=period.compare)

if info.has(t.INCIDENTS) and kpis is not None:  # what broke in the range, as incidents
    recent = anomalies.recent_incidents(snap, kpis.start)
    if recent.height:
        lines = [
            f"- **{row['headline_label']}** ({row['severity']}"
            + (", ongoing" if row["ongoing"] else "")
            + f"): {row['description']}"
            for row in recent.head(3).iter_rows(named=True)
        ]
        st.warning(
            f"{recent.height} incident(s) since {kpis.start:%d %b} — see the Anomalies page.\n\n"
            + "\n".join(lines),
            icon=":material/warning:",
        )
elif info.has(t.ANOMALIES):
    recent = anomalies.latest_anomalies(snap)
    if recent.height:
        flagged = recent.filter(recent["dimension"] == "all")
        top = (flagged if flagged.height else recent).head(3)
        lines = [
            f"- **{anomalies.metric_label(row['metric'])}** on {row['day']} "
            f"({row['dimension_value']}): a {row['direction']} to "
            f"{charts.format_value(row['value'], charts.metric_format(row['metric']))} "
            f"against an expected "
            f"{charts.format_value(row['expected'], charts.metric_format(row['metric']))}"
            for row in top.iter_rows(named=True)
        ]
        st.warning(
            f"{recent.height} anomalies flagged in the latest days — see the Anomalies page.\n\n"
            + "\n".join(lines),
            icon=":material/warning:",
        )


def narrative_body(text: str) -> str:
    """The summary's text without its provenance lines (the caption says them once)."""
    body = text.split("\n\n---\n", 1)[0].strip()
    if body.startswith(f"_{DETERMINISTIC_LABEL}"):
        body = body.split("\n\n", 1)[1] if "\n\n" in body else ""
    return body


st.subheader("Summary")
if ui.require(info, t.SUMMARY, what="The summary"):
    summary = source.table(snap, t.SUMMARY, "generated_at DESC")
    if ui.has_rows(summary, "The summary table is empty."):
        row = summary.row(0, named=True)
        label = (
            f"Written by {row['model']}"
            if row["mode"] == "llm"
            else DETERMINISTIC_LABEL
            + (f": {row['fallback_reason']}" if row.get("fallback_reason") else "")
        )
        with st.container(border=True):
            st.markdown(narrative_body(row["narrative"]))
            st.caption(
                f"{row['period_start']} → {row['period_end']} (the pipeline's latest 7 days) · "
                f"{label} · sources: {row['source_tables'] or 'none'}"
            )

st.subheader("Daily trend")
if info.has(t.DAILY_TRENDS) and period:
    left, right = st.columns(2)
    with left:
        metric = ui.pick_trend_metric(st, "overview_metric")
    series = trends.trend_series(snap, metric, start=period.start, end=period.end)
    before = (
        trends.previous_series(snap, metric, "daily", "all", period) if period.compare else None
    )
    windows = (
        anomalies.incident_windows(snap, metric, period.start, period.end)
        if info.has(t.INCIDENTS)
        else pl.DataFrame()
    )
    chart = charts.trend_line(
        series,
        y_title=TREND_METRICS[metric],
        y_format=charts.metric_format(metric),
        previous=before,
    )
    st.altair_chart(charts.annotate_incidents(chart, windows, period.start), width="stretch")
    with right:
        st.caption(
            f"{TREND_METRICS[metric]} per day, all users, {period.label()}"
            + (", the previous period dashed." if before is not None and before.height else ".")
            + " Partial days are included and marked in the table below."
            + (
                f" {anomalies.incident_note(windows, TREND_METRICS[metric])}"
                if windows.height
                else ""
            )
        )
    with st.expander("The numbers"):
        ui.table(
            series.drop("segment").rename({"value": metric}),
            f"daily_{metric}",
            column_config=ui.trend_columns([metric]),
        )
