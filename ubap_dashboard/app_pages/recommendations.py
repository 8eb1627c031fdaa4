"""Recommendations: look a user up, see what we would show them and why; similar pages; quality."""

import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import recommendations, source

snap, info = ui.snapshot_and_info()

st.title("Recommendations")
ui.stale_banner(snap, t.USER_RECOMMENDATIONS, t.SIMILAR_PAGES, t.REC_EVALUATION, t.EVENTS, t.PAGES)

st.subheader("Look up a user")
if ui.require(info, t.USER_RECOMMENDATIONS, what="The user lookup"):
    suggestions = recommendations.sample_user_ids(snap)
    left, right = st.columns([1, 2])
    with left:
        typed = st.text_input(
            "User id", placeholder="type any user id", key="rec_user_typed"
        ).strip()
        picked = st.selectbox(
            "…or pick a user with personalised recommendations",
            suggestions,
            index=0 if suggestions else None,
            disabled=bool(typed),
            key="rec_user",
        )
    user_id = typed or picked or ""
    if not user_id:
        st.info("Type or pick a user id.")
    else:
        profile = recommendations.user_profile(snap, user_id)
        recs = recommendations.user_recommendations(snap, user_id)
        if profile is None and recs.is_empty():
            st.warning(f"No user `{user_id}` in this snapshot.")
        else:
            with right:
                if profile:
                    facts = [
                        f"signed up {profile.get('signup_date')}",
                        f"{profile.get('country')}",
                        f"{profile.get('device')}",
                        f"via {profile.get('traffic_source')}",
                    ]
                    if profile.get("segment_name"):
                        facts.append(f"segment **{profile['segment_name']}**")
                    if profile.get("conversion_probability") is not None:
                        facts.append(f"P(purchase) {profile['conversion_probability']:.0%}")
                    st.markdown(f"**{user_id}** · " + " · ".join(facts))
                if recs.height:
                    filled_by = recs["source"][0]
                    st.caption(
                        "Personalised (hybrid of content, collaborative and popularity signals)."
                        if filled_by == "hybrid"
                        else f"Cold start: filled from {filled_by.replace('_', ' ')}."
                    )
            ui.table(
                recs,
                "user_recommendations",
                column_config={
                    "reason": st.column_config.TextColumn("why", width="large"),
                    "score": ui.number("score", "%.3f"),
                },
            )
            if info.has(t.EVENTS):
                with st.expander("What this user did recently"):
                    ui.table(recommendations.user_history(snap, user_id), "user_recent_activity")

st.subheader("Similar pages")
if ui.require(info, t.SIMILAR_PAGES, t.PAGES, what="The similar pages"):
    choices = recommendations.page_choices(snap)
    if ui.has_rows(choices, "No page has neighbours in this snapshot."):
        labels = {
            row["page_id"]: f"{row['title']} ({row['category']})"
            for row in choices.iter_rows(named=True)
        }
        page_id = st.selectbox("Page", list(labels), format_func=labels.get, key="rec_page")
        similar = recommendations.similar_pages(snap, page_id)
        st.altair_chart(
            charts.bars(
                similar,
                category="similar_title",
                value="similarity",
                value_title="cosine similarity",
                value_format=".2f",
                color="same_category",
            ),
            width="stretch",
        )
        ui.table(similar, "similar_pages", column_config={"similarity": ui.number("similarity")})

st.subheader("Offline evaluation")
if ui.require(info, t.REC_EVALUATION, what="The evaluation table"):
    evaluation = source.table(snap, t.REC_EVALUATION, "is_baseline, ndcg_at_k DESC NULLS LAST")
    if ui.has_rows(evaluation, "The evaluation table is empty."):
        usable, sentence = recommendations.evaluation_status(evaluation)
        st.caption(
            sentence + " Intervals: bootstrap 95% over test users. Baselines are random and "
            "popularity rankings."
        )
        if not usable:
            st.warning(f"Insufficient data: {evaluation['note'][0]}")
        else:
            st.altair_chart(
                charts.grouped_metric_bars(
                    recommendations.evaluation_long(evaluation),
                    group="method",
                    metric="metric",
                    value="value",
                    highlight="kind",
                ),
            )
        ui.table(
            evaluation,
            "rec_evaluation",
            column_config={
                "hr_at_k": ui.number("HR@k"),
                "ndcg_at_k": ui.number("NDCG@k"),
                "ndcg_ci_low": ui.number("NDCG 95% low"),
                "ndcg_ci_high": ui.number("NDCG 95% high"),
                "recall_at_k": ui.number("recall@k"),
                "map_at_k": ui.number("MAP@k"),
                "coverage": ui.percent("coverage"),
                "novelty": ui.number("novelty (bits)", "%.2f"),
                "validation_ndcg_at_k": ui.number("validation NDCG@k"),
            },
        )
