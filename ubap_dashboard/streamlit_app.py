"""The UBAP dashboard: one entry file, pages in app_pages/, data through data/.

Run: streamlit run ubap_dashboard/streamlit_app.py --server.address 127.0.0.1 --server.port 8501
"""

from pathlib import Path

import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import ui
from ubap_dashboard.data import pipeline, source, trends

PAGES = Path(__file__).parent / "app_pages"
# The pages that read the global date range (drawn in the sidebar, kept in the URL).
PERIOD_PAGES = ("Overview", "Trends", "Funnels & retention")

st.set_page_config(page_title="UBAP analytics", page_icon=":material/insights:", layout="wide")

navigation = st.navigation(
    {
        "Behaviour": [
            st.Page(
                PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True
            ),
            st.Page(PAGES / "trends.py", title="Trends", icon=":material/trending_up:"),
            st.Page(
                PAGES / "funnels.py",
                title="Funnels & retention",
                icon=":material/filter_alt:",
                url_path="funnels",
            ),
            st.Page(PAGES / "segments.py", title="Segments", icon=":material/groups:"),
        ],
        "Intelligence": [
            st.Page(PAGES / "predictions.py", title="Predictions", icon=":material/psychology:"),
            st.Page(PAGES / "anomalies.py", title="Anomalies", icon=":material/warning:"),
            st.Page(
                PAGES / "recommendations.py", title="Recommendations", icon=":material/recommend:"
            ),
            st.Page(PAGES / "admin.py", title="Admin insights", icon=":material/lightbulb:"),
        ],
        "Operations": [
            st.Page(PAGES / "pipeline.py", title="Pipeline", icon=":material/database:"),
        ],
    }
)

snapshot = source.current()
if snapshot is None:
    ui.empty_state(*source.no_snapshot_reason())
    st.stop()

ui.set_snapshot(snapshot)
try:
    info = source.snapshot_info(snapshot)
    with st.sidebar:
        st.caption(
            f"Snapshot `{snapshot.snapshot_id}`  \n"
            f"data {info.meta.data_start or '?'} → {info.meta.data_end or '?'}  \n"
            f"published {pipeline.freshness(info.meta.materialized_at)}"
        )
    bounds = trends.trend_days(snapshot) if info.has(t.DAILY_TRENDS) else None
    if navigation.title in PERIOD_PAGES and bounds is not None:
        ui.period_controls(*bounds)
    else:
        ui.forget_period()
    navigation.run()
except source.SnapshotChanged:
    # A refresh replaced (and pruned) the snapshot mid-render: start over on the new one.
    st.rerun()
