"""Small UI building blocks shared by the pages: tables with a CSV download, empty states."""

from typing import Any

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import TREND_METRICS, Kpi
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard import charts
from ubap_dashboard.data import source

_SNAPSHOT_KEY = "ubap_snapshot"
MAKE_UP = "make up"


def set_snapshot(snap: Snapshot) -> None:
    """Called by the entry script once per run: every page of the run reads this snapshot."""
    st.session_state[_SNAPSHOT_KEY] = snap


def snapshot() -> Snapshot:
    snap = st.session_state.get(_SNAPSHOT_KEY)
    if snap is None:  # a page run without the entry script (should not happen)
        snap = source.current()
        if snap is None:
            empty_state(*source.no_snapshot_reason())
            st.stop()
    return snap


def snapshot_and_info() -> tuple[Snapshot, source.SnapshotInfo]:
    snap = snapshot()
    return snap, source.snapshot_info(snap)


def empty_state(reason: str, unreadable: bool = False) -> None:
    """What the whole app shows before the pipeline has published anything, or when the
    published snapshot cannot be read (``reason`` says what is broken and the fix)."""
    st.title("No data yet")
    if unreadable:
        st.warning(
            "The pipeline's serving snapshot cannot be read, so there is nothing to show. "
            "Publishing a new snapshot repairs it:",
            icon=":material/report:",
        )
    else:
        st.info(
            "The dashboard reads the pipeline's serving snapshot, and none has been published "
            "yet. Run the pipeline once to build every table and publish the first snapshot:",
            icon=":material/hourglass_empty:",
        )
    st.code(MAKE_UP, language="bash")
    st.caption(
        "Or materialize the assets in the Dagster UI (http://127.0.0.1:3000), ending with "
        "`serving_snapshot`. This page picks the new snapshot up on its next refresh."
    )
    if reason:
        st.caption(f"Details: {reason}")


def stale_banner(snap: Snapshot, *tables: str) -> None:
    """A warning naming each of ``tables`` that the latest run did not refresh, and why.

    Pages call it under their title with the tables they show; the data stays visible (it is
    the last good version), the banner says it is older than the rest of the snapshot.
    """
    stale = source.not_refreshed(snap)
    hits = [(name, stale[name]) for name in tables if name in stale]
    if not hits:
        return
    lines = "\n".join(f"- `{name}` not refreshed: {reason}" for name, reason in hits)
    st.warning(
        "Part of this page shows older data: the latest pipeline run did not refresh it.\n\n"
        f"{lines}\n\nThe Pipeline page lists every table's status.",
        icon=":material/history:",
    )


def require(info: source.SnapshotInfo, *tables: str, what: str = "This section") -> bool:
    """True when the snapshot has every table; otherwise a note naming what to materialize."""
    missing = [name for name in tables if name not in info.tables]
    if not missing:
        return True
    names = ", ".join(f"`{name}`" for name in missing)
    st.info(
        f"{what} needs {names}, which the current snapshot `{info.meta.snapshot_id}` does not "
        f"contain. Run `{MAKE_UP}` (or materialize {names} and then `serving_snapshot`) to "
        "publish a snapshot that has it.",
        icon=":material/info:",
    )
    return False


def warning_list(intro: str, lines: list[str], icon: str = ":material/warning:") -> None:
    """A warning with one bullet per problem (tables not refreshed, checks that failed)."""
    st.warning(intro + "\n\n" + "\n".join(f"- {line}" for line in lines), icon=icon)


def optional_metric(slot: Any, label: str, value: float | None, fmt: str, help: str) -> None:
    """A metric card that says n/a where the figure cannot be computed on this data (scores
    against the generator's ground truth on ingested events, say)."""
    slot.metric(label, "n/a" if value is None else format(value, fmt), help=help, border=True)


def pick_trend_metric(container: Any, key: str) -> str:
    """A "Metric" select box of the trend metrics (by label) in ``container`` (``st`` or a
    column); the picked metric's column name."""
    return container.selectbox(
        "Metric", list(TREND_METRICS), format_func=TREND_METRICS.get, key=key
    )


def has_rows(frame: pl.DataFrame, empty: str) -> bool:
    """Whether a section has something to show; if not, a note saying ``empty``."""
    if frame.is_empty():
        st.info(empty)
        return False
    return True


def _csv(frame: pl.DataFrame) -> bytes:
    flat = frame.with_columns(
        [
            pl.col(name).struct.json_encode()
            if isinstance(dtype, pl.Struct)
            else pl.col(name).cast(pl.List(pl.String)).list.join(";")
            for name, dtype in frame.schema.items()
            if isinstance(dtype, pl.Struct | pl.List | pl.Array)
        ]
    )
    return flat.write_csv().encode()


def _time_formats(frame: pl.DataFrame) -> dict:
    """Show dates as dates and timestamps to the minute (the grid's default adds midnight)."""
    config: dict = {}
    for name, dtype in frame.schema.items():
        if dtype == pl.Date:
            config[name] = st.column_config.DateColumn(name, format="YYYY-MM-DD")
        elif isinstance(dtype, pl.Datetime):
            config[name] = st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm")
    return config


def table(
    frame: pl.DataFrame,
    name: str,
    *,
    column_config: dict | None = None,
    height: int | str = "auto",
    caption: str | None = None,
) -> None:
    """A dataframe and, right under it, a button that downloads exactly these rows as CSV."""
    if caption:
        st.caption(caption)
    if frame.is_empty():
        st.caption("No rows.")
    config = {**_time_formats(frame), **(column_config or {})}
    st.dataframe(frame, hide_index=True, column_config=config, height=height)
    st.download_button(
        f"Download {name}.csv",
        data=_csv(frame),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"download_{name}",
        icon=":material/download:",
        on_click="ignore",
    )


def percent(label: str, help: str | None = None) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, format="percent", help=help)


def number(label: str, fmt: str = "%.3f", help: str | None = None) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, format=fmt, help=help)


def _compact_money(amount: float) -> str:
    """Short enough for a KPI card: $950, $12.3k, $2.85M."""
    if abs(amount) >= 1_000_000:
        return f"${amount / 1_000_000:,.2f}M"
    if abs(amount) >= 10_000:
        return f"${amount / 1000:,.1f}k"
    return f"${amount:,.0f}"


def kpi(figure: Kpi) -> None:
    """A bordered metric: rates move in percentage points, counts and money in percent."""
    fmt = charts.metric_format(figure.metric)
    if fmt == charts.PERCENT:
        value = f"{figure.value:.1%}"
        delta = None if figure.delta is None else f"{figure.delta * 100:+.1f} pp"
    else:
        if fmt == charts.MONEY:
            value = _compact_money(figure.value)
        else:
            value = f"{figure.value:,.0f}"
        delta = None if figure.delta_pct is None else f"{figure.delta_pct:+.1%}"
    st.metric(
        figure.label,
        value,
        delta,
        # a falling bounce rate is good news
        delta_color="inverse" if figure.metric == "bounce_rate" else "normal",
        border=True,
    )
