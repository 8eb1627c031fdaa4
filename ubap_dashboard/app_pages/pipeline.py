"""Pipeline: which snapshot is being served, how fresh it is, and how the asset checks went."""

import polars as pl
import streamlit as st

from ubap_assets.warehouse import tables as t
from ubap_dashboard import charts, ui
from ubap_dashboard.data import pipeline, source

snap, info = ui.snapshot_and_info()
meta = info.meta

st.title("Pipeline")

st.markdown(f"Serving snapshot `{meta.snapshot_id}`")
cards = st.columns(4)
cards[0].metric("Tables", len(info.tables), border=True)
cards[1].metric(
    "Published",
    pipeline.freshness(meta.materialized_at),
    help=f"materialized at {meta.materialized_at} UTC",
    border=True,
)
cards[2].metric("Data from", f"{meta.data_start or '?'}", border=True)
cards[3].metric("Data to", f"{meta.data_end or '?'}", border=True)
st.caption(
    f"Run `{meta.run_id or 'unknown'}` published this snapshot at {meta.materialized_at} UTC. "
    "The dashboard and the API read only published snapshots; a refresh switches them over "
    "atomically, and a failed run leaves this one in service."
)

st.subheader("Table freshness")
status = source.table_status(snap)
if status.is_empty():
    st.info(
        f"Snapshot `{meta.snapshot_id}` was published before per-table freshness was recorded; "
        f"the next run (`{ui.MAKE_UP}`) records it.",
        icon=":material/info:",
    )
else:
    stale = status.filter(~pl.col("refreshed"))
    fresh = status.height - stale.height
    if stale.height:
        ui.warning_list(
            f"{stale.height} of {status.height} tables were not refreshed by the latest run; "
            "they serve their last good version (or are missing). Fix the cause and rerun; "
            "a failed run republishes on its own what did succeed.",
            [
                f"`{row['table_name']}` not refreshed: {row['reason']}"
                for row in stale.iter_rows(named=True)
            ],
            icon=":material/history:",
        )
    else:
        st.success(f"All {fresh} tables were refreshed by the latest run.", icon=":material/check:")
    ui.table(
        status,
        "table_status",
        column_config={"refreshed": st.column_config.CheckboxColumn("refreshed")},
        height=min(36 * (status.height + 1) + 4, 1100),
    )

st.subheader("Asset checks")
if ui.require(info, t.CHECK_RESULTS, what="The asset-check status"):
    checks = source.table(snap, t.CHECK_RESULTS, "status, blocking DESC, asset_key, check_name")
    if ui.has_rows(checks, "No asset check was evaluated in the publishing run."):
        failed = checks.filter(pl.col("status") == "failed")
        skipped = checks.filter(pl.col("status") == "skipped")
        status = st.columns(4)
        status[0].metric("Checks", checks.height, border=True)
        status[1].metric("Passed", checks.filter(pl.col("status") == "passed").height, border=True)
        status[2].metric("Failed (warnings)", failed.height, border=True)
        status[3].metric(
            "Skipped",
            skipped.height,
            help="Too little data to score, or no ground truth: neither passed nor failed.",
            border=True,
        )
        if skipped.height:
            ui.warning_list(
                "Skipped checks (not scored on this data):",
                [
                    f"`{row['asset_key']}` {row['check_name']}: {row['description']}"
                    for row in skipped.iter_rows(named=True)
                ],
            )
        if failed.height:
            ui.warning_list(
                "Failed non-blocking checks:",
                [
                    f"`{row['asset_key']}` {row['check_name']}: {row['description']}"
                    for row in failed.iter_rows(named=True)
                ],
            )
        else:
            st.success("Every asset check passed.", icon=":material/check:")
        ui.table(checks, "check_results")

st.subheader("Tables in this snapshot")
served = tuple(name for name in t.SERVING_TABLES if name in info.tables)
counts = pipeline.row_counts(snap, served)
missing = [name for name in t.SERVING_TABLES if name not in info.tables]
if missing:
    st.info(
        f"Not in this snapshot: {', '.join(f'`{m}`' for m in missing)}. Their assets were not "
        f"materialized before the snapshot was published; `{ui.MAKE_UP}` builds everything.",
        icon=":material/info:",
    )
ui.table(
    counts,
    "snapshot_tables",
    column_config={"rows": ui.number("rows", "%d")},
    height=min(36 * (counts.height + 1) + 4, 1100),
)
if info.has(t.EVENT_REJECTS):
    rejects, total = pipeline.rejects(snap)
    if total:
        st.subheader("Rejected input rows")
        st.caption(
            f"{total:,} rows of the ingested files failed validation and are not in the events"
            + (f"; the first {rejects.height:,} are shown." if total > rejects.height else ".")
        )
        reasons = rejects.group_by(pl.col("reason").str.split(":").list.first().alias("code")).agg(
            pl.len().alias("rows")
        )
        st.altair_chart(
            charts.bars(reasons, category="code", value="rows", value_title="rejected rows"),
            width="stretch",
        )
        ui.table(rejects, "event_rejects")
