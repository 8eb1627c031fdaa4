"""Predictions: who is likely to buy, who is at risk of bouncing, and how good the models are."""

import json

import streamlit as st

from ubap_assets.core.metrics import describe
from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import predictions

snap, info = ui.snapshot_and_info()

st.title("Predictions")
ui.stale_banner(snap, t.USER_PREDICTIONS, t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES)

LIST_COLUMNS = {
    "user_id": "User",
    "segment": "Segment",
    "conversion_probability": ui.percent("P(purchase)", help=describe("purchase_within_horizon")),
    "conversion_rank": ui.number("Purchase rank", "%d"),
    "at_risk_probability": ui.percent(
        "P(next session bounces)", help=describe("next_session_bounce")
    ),
    "at_risk": "At risk",
    "at_risk_rank": ui.number("At-risk rank", "%d"),
    "conversion_model": "Purchase model",
    "bounce_model": "Bounce model",
    "model_version": "Model version",
    **{
        f"why_{i}": st.column_config.TextColumn(
            f"Why ({nth})", width="medium", help="A feature that moved the score most, in words."
        )
        for i, nth in enumerate(("1st", "2nd", "3rd"), start=1)
    },
}
TASK_NAMES = {
    "conversion": "Conversion (user-level: purchase within the horizon)",
    "bounce": "Bounce (user-level: the next session bounces)",
}


def scored_list(kind: str, task: str, caption: str, size: int) -> None:
    """One list, or why its task serves no scores."""
    note = predictions.prediction_notes(snap).get(task)
    if note:
        st.info(f"No {task} model is served: {note}.", icon=":material/info:")
        return
    method = predictions.reason_methods(snap).get(task)
    st.caption(caption + (f" Reasons: {method}." if method else ""))
    users = predictions.prediction_list(snap, kind, size)
    ui.table(
        users,
        f"cohort_{kind}_{snap.snapshot_id}",
        column_config=LIST_COLUMNS,
        download_label=f"Export these {users.height} users as a cohort (CSV)",
    )


def interval(row: dict, metric: str) -> str:
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    return f"95% interval {low:.3f} to {high:.3f}" if low is not None and high is not None else ""


def since(day) -> str:
    return f" from {day:%Y-%m-%d}" if day is not None else ""


if ui.require(info, t.USER_PREDICTIONS, what="The prediction lists"):
    size = st.slider("Users per list", 10, 500, 50, step=10, key="prediction_size")
    high_value, at_risk = st.tabs(["High value", "At risk"])
    with high_value:
        scored_list(
            "high_value",
            "conversion",
            "Users most likely to purchase within the horizon (the conversion model in service), "
            "with the three features that pushed their score most.",
            size,
        )
    with at_risk:
        scored_list(
            "at_risk",
            "bounce",
            "Users whose next session is most likely a bounce (above the bounce model's "
            "threshold, chosen on the validation window), with the bounce model's reasons.",
            size,
        )

st.subheader("By segment")
if ui.require(info, t.USER_PREDICTIONS, t.USER_SEGMENTS, what="The per-segment outlook"):
    outlook = predictions.segment_outlook(snap)
    if ui.has_rows(outlook, "No scored user has a segment."):
        left, right = st.columns(2)
        for slot, column, title in (
            (left, "mean_conversion_probability", "mean P(purchase)"),
            (right, "at_risk_share", "share of users at risk"),
        ):
            with slot:
                st.markdown(f"**{title[0].upper() + title[1:]}**")
                st.altair_chart(
                    charts.bars(
                        outlook.drop_nulls(column),
                        category="segment_name",
                        value=column,
                        value_title=title,
                        value_format=charts.PERCENT,
                    ),
                    width="stretch",
                )
        ui.table(
            outlook.drop("segment_id"),
            "predictions_by_segment",
            column_config={
                "segment_name": "Segment",
                "users": ui.number("Users", "%d"),
                "mean_conversion_probability": ui.percent(
                    "Mean P(purchase)", help=describe("purchase_within_horizon")
                ),
                "mean_at_risk_probability": ui.percent(
                    "Mean P(next session bounces)", help=describe("next_session_bounce")
                ),
                "at_risk_users": ui.number("Users at risk", "%d"),
                "at_risk_share": ui.percent("At-risk share"),
                "expected_converters": ui.number(
                    "Expected purchasers", "%.0f", help="Sum of P(purchase) over the segment."
                ),
            },
        )

st.subheader("Model cards")
if ui.require(info, t.MODEL_METRICS, what="The model cards"):
    metrics = predictions.model_metrics(snap)
    tasks = sorted(metrics["task"].unique().to_list(), key=lambda name: name != "conversion")
    task = st.segmented_control(
        "Task",
        tasks,
        default=tasks[0] if tasks else None,
        required=bool(tasks),
        format_func=lambda name: TASK_NAMES.get(name, name),
        key="model_task",
    )
    task_metrics = metrics.filter(metrics["task"] == task)
    tested = task_metrics.filter(task_metrics["split"] == "test")
    best = tested.filter(tested["is_best"])
    insufficient = task_metrics.filter(task_metrics["status"] == "insufficient data")
    if insufficient.height:
        st.warning(
            f"No {task} model is served: {insufficient['note'][0]}.", icon=":material/warning:"
        )
    if best.height:
        row = best.row(0, named=True)
        cards = st.columns(4)
        with cards[0].container(border=True):  # the name in full (a metric card cuts it)
            st.caption("Model in use")
            st.markdown(f"**{row['model'].replace('_', ' ')}**")
        cards[1].metric(
            "ROC-AUC (test)", f"{row['roc_auc']:.3f}", help=interval(row, "roc_auc"), border=True
        )
        cards[2].metric(
            "PR-AUC (test)",
            f"{row['pr_auc']:.3f}",
            border=True,
            help=f"{interval(row, 'pr_auc')}; positive rate {row['positive_rate']:.1%}",
        )
        ui.optional_metric(
            cards[3],
            "AUC vs ceiling",
            row.get("auc_vs_ceiling"),
            ".0%",
            help="ROC-AUC relative to the generator's true propensities (synthetic data only).",
        )
        st.caption(
            f"Label: {row['label']}. Model, hyper-parameters and threshold chosen on the "
            f"validation window{since(row['valid_cutoff'])}; reported on the later test "
            f"window{since(row['test_cutoff'])}: {row['n']:,} users, {row['positives']:,} "
            f"positives, ROC-AUC {row['roc_auc']:.3f} ({interval(row, 'roc_auc')})."
        )
    ui.table(
        task_metrics.select(
            "model",
            "split",
            "status",
            "n",
            "positives",
            "roc_auc",
            "roc_auc_ci_low",
            "roc_auc_ci_high",
            "pr_auc",
            "pr_auc_ci_low",
            "pr_auc_ci_high",
            "f1",
            "precision",
            "recall",
            "lift",
            "brier",
            "threshold",
            "auc_vs_ceiling",
            "is_best",
            "note",
        ),
        f"model_metrics_{task}",
        column_config={
            "n": ui.number("Users (n)", "%d"),
            "positives": ui.number("Positives", "%d"),
            "f1": ui.number("F1"),
            "is_best": "In use",
            "roc_auc": ui.number("ROC-AUC"),
            "roc_auc_ci_low": ui.number("ROC-AUC low", help="Bootstrap 95% interval."),
            "roc_auc_ci_high": ui.number("ROC-AUC high"),
            "pr_auc": ui.number("PR-AUC"),
            "pr_auc_ci_low": ui.number("PR-AUC low"),
            "pr_auc_ci_high": ui.number("PR-AUC high"),
            "brier": ui.number("Brier"),
            "lift": ui.number("lift", "%.2f"),
            "auc_vs_ceiling": ui.percent("AUC vs ceiling"),
        },
    )
    if ui.require(info, t.MODEL_CURVES, what="The ROC and precision-recall curves"):
        roc, pr = st.columns(2)
        with roc:
            st.markdown("**ROC curve**")
            st.altair_chart(
                charts.model_curve(predictions.model_curves(snap, task, "roc"), curve="roc"),
                width="stretch",
            )
        with pr:
            st.markdown("**Precision-recall curve**")
            st.altair_chart(
                charts.model_curve(predictions.model_curves(snap, task, "pr"), curve="pr"),
                width="stretch",
            )
    if info.has(t.MODEL_CARDS):
        cards_frame = predictions.model_cards(snap, task)
        for card in cards_frame.filter(cards_frame["model"].is_not_null()).iter_rows(named=True):
            title = f"{card['model']}{' (in use)' if card['is_best'] else ''}"
            with st.expander(f"Model card: {title}"):
                features = json.loads(card["features_json"] or "[]")
                lines = [
                    f"- version `{card['model_version']}`, artifact `{card['artifact_path']}`",
                    f"- hyper-parameters {card['params_json']}; chosen on the "
                    f"{card['chosen_on']}; reported on the {card['reported_on']}",
                    f"- reasons: {card['reason_method']}",
                    f"- horizon {card['horizon_days']} days, lookback {card['lookback_days']} "
                    f"days, threshold {card['threshold']:.3f}",
                    f"- {len(features)} features: {', '.join(features)}",
                ]
                if card.get("max_single_feature_auc") is not None:
                    lines.append(
                        f"- leakage guard: the best single feature ({card['leakiest_feature']}) "
                        f"reaches ROC-AUC {card['max_single_feature_auc']:.3f} on its own"
                    )
                st.markdown("\n".join(lines))
                st.json(json.loads(card["metrics_json"] or "{}"), expanded=False)
        ui.table(cards_frame, f"model_cards_{task}")
