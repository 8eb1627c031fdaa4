"""Predictions: who is likely to buy, who is at risk of bouncing, and how good the models are."""

import json

import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import predictions

snap, info = ui.snapshot_and_info()

st.title("Predictions")
ui.stale_banner(snap, t.USER_PREDICTIONS, t.MODEL_METRICS, t.MODEL_CARDS, t.MODEL_CURVES)

LIST_COLUMNS = {
    "conversion_probability": ui.percent("P(purchase)"),
    "at_risk_probability": ui.percent("P(next session bounces)"),
    "reasons": st.column_config.TextColumn("why", width="large"),
}

if ui.require(info, t.USER_PREDICTIONS, what="The prediction lists"):
    size = st.slider("Users per list", 10, 500, 50, step=10, key="prediction_size")
    high_value, at_risk = st.tabs(["High value", "At risk"])
    with high_value:
        st.caption(
            "Users most likely to purchase in the next horizon, best conversion model first, with "
            "the three features that pushed their score most."
        )
        ui.table(
            predictions.prediction_list(snap, "high_value", size),
            "high_value_users",
            column_config=LIST_COLUMNS,
        )
    with at_risk:
        st.caption(
            "Users whose next session is most likely a bounce (above the model's tuned threshold)."
        )
        ui.table(
            predictions.prediction_list(snap, "at_risk", size),
            "at_risk_users",
            column_config=LIST_COLUMNS,
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
        format_func=lambda name: {
            "conversion": "Conversion (purchase in the horizon)",
            "bounce": "Bounce (next session)",
        }.get(name, name),
        key="model_task",
    )
    task_metrics = metrics.filter(metrics["task"] == task)
    best = task_metrics.filter(task_metrics["is_best"])
    if best.height:
        row = best.row(0, named=True)
        cards = st.columns(4)
        cards[0].metric("Model in use", row["model"].replace("_", " "), border=True)
        cards[1].metric("ROC-AUC", f"{row['roc_auc']:.3f}", border=True)
        cards[2].metric(
            "PR-AUC",
            f"{row['pr_auc']:.3f}",
            border=True,
            help=f"Positive rate on validation: {row['valid_positive_rate']:.1%}",
        )
        ui.optional_metric(
            cards[3],
            "AUC vs ceiling",
            row.get("auc_vs_ceiling"),
            ".0%",
            help="ROC-AUC relative to the generator's true propensities (synthetic data only).",
        )
        st.caption(
            f"Trained on labels up to {row['valid_cutoff']:%Y-%m-%d}, validated on the "
            f"{row['horizon_days']} days after it ({row['n_valid']:,} users)."
        )
    ui.table(
        task_metrics,
        f"model_metrics_{task}",
        column_config={
            "roc_auc": ui.number("ROC-AUC"),
            "pr_auc": ui.number("PR-AUC"),
            "brier": ui.number("Brier"),
            "log_loss": ui.number("log loss"),
            "auc_vs_ceiling": ui.percent("AUC vs ceiling"),
            "valid_positive_rate": ui.percent("positive rate"),
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
        for card in cards_frame.iter_rows(named=True):
            title = f"{card['model']}{' (in use)' if card['is_best'] else ''}"
            with st.expander(f"Model card: {title}"):
                features = json.loads(card["features_json"] or "[]")
                lines = [
                    f"- version `{card['model_version']}`, artifact `{card['artifact_path']}`",
                    f"- training labels up to {card['label_window_train_end']:%Y-%m-%d}, "
                    f"validation labels up to {card['label_window_valid_end']:%Y-%m-%d}",
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
