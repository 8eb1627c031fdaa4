"""Anomalies: the incidents (what broke, where, how much), what could not be scored and why,
how many incidents another sensitivity would have raised, and any metric's scored history."""

from datetime import timedelta

import polars as pl
import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import anomalies, source

snap, info = ui.snapshot_and_info()

st.title("Anomalies")
ui.stale_banner(
    snap,
    t.INCIDENTS,
    t.INCIDENT_CONTRIBUTORS,
    t.ANOMALY_SENSITIVITY,
    t.ANOMALIES,
    t.ANOMALY_HISTORY,
    t.ANOMALY_SCORES,
)
unscored = (
    anomalies.unscored(snap) if info.has(t.ANOMALY_HISTORY) else pl.DataFrame()
)  # never silent: what could not be scored, and why

st.subheader("Incidents")
if ui.require(info, t.INCIDENTS, t.INCIDENT_CONTRIBUTORS, what="The incident list"):
    listed = anomalies.incidents(snap)
    if listed.is_empty():
        cannot = unscored.filter(pl.col("latest_day_unscored")) if unscored.height else unscored
        if cannot.height and cannot.filter(pl.col("dimension") == "all").height:
            reasons = cannot.filter(pl.col("dimension") == "all")["reason"].unique().to_list()
            st.warning(
                "No incident, but the overall series could not be scored on the latest day: "
                + "; ".join(reasons[:3])
                + ". See “Could not be scored” below.",
                icon=":material/help:",
            )
        else:
            st.success(
                "Nothing flagged: every scored day stayed within its expected range.",
                icon=":material/check:",
            )
    else:
        ongoing = listed.filter(pl.col("ongoing")).height
        st.caption(
            f"{listed.height} incident(s), newest first ({ongoing} ongoing): flagged points on "
            "consecutive days, metrics and scopes that moved together, grouped."
        )
        ui.table(
            listed.select(anomalies.INCIDENT_LIST_COLUMNS),
            "incidents",
            column_config={
                "relative_change": ui.percent("change vs expected"),
                "top_share": ui.percent("top share"),
                "headline_label": "headline",
            },
        )
        rows = listed.to_dicts()
        picked = st.selectbox(
            "Incident",
            range(len(rows)),
            format_func=lambda i: anomalies.incident_choice(rows[i]),
            key="incident_pick",
        )
        incident = rows[picked]
        drill = anomalies.incident_drill(snap, incident["incident_id"])
        metric = incident["headline_metric"]
        fmt = charts.metric_format(metric)
        with st.container(border=True):
            st.markdown(f"**{incident['description']}**")
            cards = st.columns(4)
            cards[0].metric("Observed", charts.format_value(incident["observed"], fmt))
            cards[1].metric("Expected", charts.format_value(incident["expected"], fmt))
            cards[2].metric("Change", f"{incident['relative_change']:+.1%}")
            cards[3].metric(
                "Days", f"{incident['days']}", help=f"peak score {incident['peak_score']:+.1f}"
            )

            left, right = st.columns(2)
            with left:
                st.markdown("**What moved: each value's share of the change**")
                headline = drill.contributors.filter(pl.col("metric") == metric)
                if ui.has_rows(headline, "No dimension value could be ranked for this incident."):
                    st.altair_chart(
                        charts.contributor_bars(headline, value_format=fmt), width="stretch"
                    )
                    if incident["top_contributor"]:
                        dimension, _, value = incident["top_contributor"].partition("=")
                        st.caption(
                            f"{value} ({dimension.replace('_', ' ')}) accounts for "
                            f"{incident['top_share']:.0%} of the "
                            f"{'drop' if incident['direction'] == 'drop' else 'rise'} in "
                            f"{incident['headline_label'].lower()}."
                        )
            with right:
                st.markdown(
                    f"**{incident['headline_label']} ({incident['headline_dimension_value']}), "
                    "the incident shaded**"
                )
                if ui.require(info, t.ANOMALY_HISTORY, what="The incident's series"):
                    series = anomalies.anomaly_series(
                        snap,
                        incident["headline_dimension"],
                        incident["headline_dimension_value"],
                        metric,
                        incident["start_day"] - timedelta(days=28),
                        incident["end_day"] + timedelta(days=14),
                    )
                    windows = anomalies.incident_windows(snap, metric).filter(
                        pl.col("incident_id") == incident["incident_id"]
                    )
                    timeline = charts.anomaly_timeline(
                        series, y_title=incident["headline_label"], y_format=fmt
                    )
                    st.altair_chart(charts.annotate_incidents(timeline, windows), width="stretch")
            if drill.points is not None:
                ui.table(
                    drill.points.select(
                        "day",
                        "dimension",
                        "dimension_value",
                        "metric",
                        "value",
                        "expected",
                        "score",
                        "severity",
                    ),
                    f"incident_points_{incident['incident_id']}",
                    caption=f"The {drill.points.height} flagged point(s) of this incident",
                    column_config={"score": ui.number("score", "%.1f")},
                )
            with st.expander("Every contributor (all metrics of the incident)"):
                ui.table(
                    drill.contributors,
                    f"incident_contributors_{incident['incident_id']}",
                    column_config={"share": ui.percent("share")},
                )

st.subheader("Could not be scored")
if ui.require(info, t.ANOMALY_HISTORY, what="The scoring coverage"):
    if unscored.is_empty():
        st.success("Every day of every scope and metric has a score.", icon=":material/check:")
    else:
        now = unscored.filter(pl.col("latest_day_unscored"))
        st.caption(
            f"{unscored.height} series (scope × metric) have days without a score, "
            f"{now.height} of them on the latest day. A day without a score is never flagged: "
            "the reason says why it could not be scored."
        )
        ui.table(unscored, "anomaly_unscored")

st.subheader("Sensitivity: simulate on history")
if ui.require(info, t.ANOMALY_SENSITIVITY, what="The sensitivity simulation"):
    curve = anomalies.sensitivity(snap)
    if ui.has_rows(curve, "The sensitivity table is empty: the history has no scored day yet."):
        st.altair_chart(charts.sensitivity_curve(curve), width="stretch")
        current = curve.filter(pl.col("is_current"))
        if current.height:
            row = current.row(0, named=True)
            st.caption(
                f"At the current threshold ({row['threshold']:g}) the detector raised "
                f"{row['incidents']} incident(s) on this history "
                f"({row['incidents_per_30_days']:.1f} per 30 days, {row['flagged_points']} "
                "flagged points). The threshold is run config of the anomaly assets: "
                "a lower one raises more incidents, a higher one fewer."
            )

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
            format_func=anomalies.metric_label,
            key="anomaly_metric",
        )
        series = anomalies.anomaly_series(snap, dimension, value, metric)
        label = anomalies.metric_label(metric)
        timeline = charts.anomaly_timeline(
            series, y_title=label, y_format=charts.metric_format(metric)
        )
        if info.has(t.INCIDENTS):
            timeline = charts.annotate_incidents(timeline, anomalies.incident_windows(snap, metric))
        st.altair_chart(timeline, width="stretch")
        flagged = series.filter(series["is_anomaly"])
        no_score = series.filter(series["note"].is_not_null())
        st.caption(
            f"{label} ({value}): the shaded band is the expected range, the dashed line the "
            f"expectation; {flagged.height} flagged day(s) in red; incidents shaded behind. "
            + (
                f"{no_score.height} day(s) have no score (latest reason: {no_score['note'][-1]})."
                if no_score.height
                else "Every day has a score."
            )
        )
        with st.expander("Every metric and scope"):
            ui.table(scopes, "anomaly_scopes")
        ui.table(flagged, f"anomalies_{dimension}_{value}_{metric}")

with st.expander("Flagged points of the latest days"):
    if ui.require(info, t.ANOMALIES, what="The latest anomalies"):
        recent = anomalies.latest_anomalies(snap)
        if recent.is_empty():
            st.success("Nothing unusual in the latest complete days.", icon=":material/check:")
        else:
            ui.table(recent, "anomalies", column_config={"score": ui.number("score", "%.1f")})

st.subheader("Detection quality")
if ui.require(info, t.ANOMALY_SCORES, what="The detection scores"):
    scores = source.table(snap, t.ANOMALY_SCORES, "detector, kind")
    if scores.is_empty():
        st.info(
            "No ground truth in this snapshot (ingested data has no planted anomalies), so the "
            "detectors cannot be scored."
        )
    else:
        st.caption(
            "Scored at incident level against the incidents the synthetic generator planted: "
            "recall, false incidents per 30 days and days to detect, this detector (ensemble) "
            "beside a plain rolling 3-sigma baseline."
        )
        ui.table(
            scores,
            "anomaly_scores",
            column_config={
                "precision": ui.percent("precision"),
                "recall": ui.percent("recall"),
                "f1": ui.number("F1", "%.2f"),
                "false_incidents_per_30_days": ui.number("false incidents / 30 days", "%.2f"),
                "mean_days_to_detect": ui.number("days to detect", "%.1f"),
            },
        )
