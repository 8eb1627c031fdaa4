"""Anomalies: what broke lately, and each metric's history against its expected range."""

import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, source

snap, info = ui.snapshot_and_info()

st.title("Anomalies")
ui.stale_banner(snap, t.ANOMALIES, t.ANOMALY_HISTORY, t.ANOMALY_SCORES)

st.subheader("Flagged in the latest days")
if ui.require(info, t.ANOMALIES, what="The latest anomalies"):
    recent = anomalies.latest_anomalies(snap)
    if recent.is_empty():
        st.success("Nothing unusual in the latest complete days.", icon=":material/check:")
    else:
        ui.table(recent, "anomalies", column_config={"score": ui.number("score", "%.1f")})

st.subheader("Timeline")
if ui.require(info, t.ANOMALY_HISTORY, what="The anomaly timeline"):
    scopes = anomalies.anomaly_scopes(snap)
    if ui.has_rows(scopes, "The detector has no history yet."):
        controls = st.columns(3)
        dimensions = scopes["dimension"].unique(maintain_order=True).to_list()
        dimension = controls[0].selectbox("Scope", dimensions, key="anomaly_dimension")
        in_scope = scopes.filter(scopes["dimension"] == dimension)
        values = in_scope["dimension_value"].unique(maintain_order=True).to_list()
        value = controls[1].selectbox("Value", values, key="anomaly_value")
        # the metric with the most flagged days first, so the default view shows something
        metrics = in_scope.filter(in_scope["dimension_value"] == value).sort(
            "flagged", descending=True, maintain_order=True
        )
        metric = controls[2].selectbox(
            "Metric",
            metrics["metric"].to_list(),
            format_func=lambda m: TREND_METRICS.get(m, m),
            key="anomaly_metric",
        )
        series = anomalies.anomaly_series(snap, dimension, value, metric)
        label = TREND_METRICS.get(metric, metric)
        st.altair_chart(
            charts.anomaly_timeline(series, y_title=label, y_format=charts.metric_format(metric)),
            width="stretch",
        )
        flagged = series.filter(series["is_anomaly"])
        st.caption(
            f"{label} ({value}): the shaded band is the expected range, the dashed line the "
            f"expectation; {flagged.height} flagged day(s) in red. Days in the warm-up window "
            "(no baseline yet) are never flagged."
        )
        with st.expander("Every metric and scope"):
            ui.table(scopes, "anomaly_scopes")
        ui.table(flagged, f"anomalies_{dimension}_{value}_{metric}")

st.subheader("Detection quality")
if ui.require(info, t.ANOMALY_SCORES, what="The detection scores"):
    scores = source.table(snap, t.ANOMALY_SCORES, "detector, kind")
    if scores.is_empty():
        st.info(
            "No ground truth in this snapshot (ingested data has no planted anomalies), so the "
            "detectors cannot be scored."
        )
    else:
        st.caption("Scored against the anomalies the synthetic generator planted.")
        ui.table(
            scores,
            "anomaly_scores",
            column_config={
                "precision": ui.percent("precision"),
                "recall": ui.percent("recall"),
                "f1": ui.number("F1", "%.2f"),
            },
        )
