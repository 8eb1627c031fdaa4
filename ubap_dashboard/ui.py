"""Small UI building blocks shared by the pages: tables with a CSV download, empty states,
the global date range, metric labels and formats."""

from datetime import date
from typing import Any

import polars as pl
import streamlit as st

from ubap_assets.core.metrics import GLOSSARY, TREND_METRICS, Kpi, describe
from ubap_assets.warehouse.snapshots import Snapshot
from ubap_dashboard import charts
from ubap_dashboard.data import source
from ubap_dashboard.period import CUSTOM, DEFAULT_PRESET, PRESETS, Period, change_text, resolve

_SNAPSHOT_KEY = "ubap_snapshot"
_PERIOD_KEY = "ubap_period"
# The URL query parameters of the global period (shared views keep them).
PERIOD_PARAM, DATES_PARAM, COMPARE_PARAM = "period", "dates", "compare"
# Trend metric -> its glossary entry (the tooltip of its label).
METRIC_GLOSSARY = {
    "conversion_rate": "session_conversion_rate",
    "bounce_rate": "bounce_rate",
    "active_users": "active_users",
    "revenue": "revenue",
}
MAKE_UP = "make up"


def set_snapshot(snap: Snapshot) -> None:
    """Called by the entry script once per run: every page of the run reads this snapshot."""
    st.session_state[_SNAPSHOT_KEY] = snap


def period_controls(first: date, last: date) -> Period:
    """The sidebar's date range (a preset or a custom range) and "compare with the previous
    period", bound to the URL so a view can be shared: ``?period=7+days&compare=false``,
    ``?period=Custom&dates=2026-01-05&dates=2026-01-20``. The entry script draws them for the
    pages that use them (bound there, the values survive switching between pages)."""
    with st.sidebar:
        st.markdown("**Date range**")
        preset = st.segmented_control(
            "Date range",
            list(PRESETS),  # no format_func: the URL holds the option as shown
            default=DEFAULT_PRESET,
            required=True,
            key=PERIOD_PARAM,
            bind="query-params",
            persist_state="session",
            label_visibility="collapsed",
        )
        custom = None
        if preset == CUSTOM:
            picked = st.date_input(
                "From – to",
                value=(first, last),
                min_value=first,
                max_value=last,
                key=DATES_PARAM,
                bind="query-params",
                persist_state="session",
            )
            # The picker holds one date while the second is being picked.
            custom = (picked[0], picked[-1]) if picked else None
        compare = st.toggle(
            "Compare with previous period",
            value=True,
            key=COMPARE_PARAM,
            bind="query-params",
            persist_state="session",
            help="The same number of days just before the range: its line dashed on the "
            "charts, its values beside the current ones; rates change in percentage points "
            "(pp), counts and money in percent.",
        )
        period = resolve(preset or DEFAULT_PRESET, first, last, custom, compare)
        st.caption(
            period.label()
            + (f"  \nvs {period.previous_label()}" if compare else "")
            + ("" if period.previous_covered or not compare else " (before the data starts)")
        )
    st.session_state[_PERIOD_KEY] = period
    return period


def forget_period() -> None:
    """No period this run (a page without the controls, or no trends to bound it)."""
    st.session_state.pop(_PERIOD_KEY, None)


def period() -> Period | None:
    """The period the entry script resolved this run (None on pages without the controls)."""
    return st.session_state.get(_PERIOD_KEY)


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


def _unit_formats(frame: pl.DataFrame) -> dict:
    """Rates and shares (0..1) as %, revenue in $, for numeric columns a page did not label."""
    config: dict = {}
    for name, dtype in frame.schema.items():
        if not dtype.is_numeric():
            continue
        if name.endswith(("_rate", "_share")) or name in ("share", "conversion", "retention"):
            config[name] = percent(readable(name))
        elif "revenue" in name:
            config[name] = money_column(readable(name))
    return config


def _time_formats(frame: pl.DataFrame) -> dict:
    """Show dates as dates and timestamps to the minute (the grid's default adds midnight)."""
    config: dict = {}
    for name, dtype in frame.schema.items():
        if dtype == pl.Date:
            config[name] = st.column_config.DateColumn(readable(name), format="YYYY-MM-DD")
        elif isinstance(dtype, pl.Datetime):
            config[name] = st.column_config.DatetimeColumn(
                readable(name), format="YYYY-MM-DD HH:mm"
            )
    return config


def table(
    frame: pl.DataFrame,
    name: str,
    *,
    column_config: dict | None = None,
    height: int | str = "auto",
    caption: str | None = None,
    download_label: str | None = None,
) -> None:
    """A dataframe and, right under it, a button that downloads exactly these rows as CSV.

    Headers are readable (``conversion_rate`` shows as "Conversion rate") unless
    ``column_config`` labels a column; the CSV keeps the column names.
    """
    if caption:
        st.caption(caption)
    if frame.is_empty():
        st.caption("No rows.")
    config = {
        **{column: readable(column) for column in frame.columns},
        **_unit_formats(frame),
        **_time_formats(frame),
        **(column_config or {}),
    }
    st.dataframe(frame, hide_index=True, column_config=config, height=height)
    st.download_button(
        download_label or f"Download {name}.csv",
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


def money(amount: float) -> str:
    """The dashboard's one money format (the source's currency, shown as $): $2,745,123.45."""
    return f"${amount:,.2f}"


def _compact_money(amount: float) -> str:
    """Short enough for a KPI card: $950, $12.3k, $2.85M (the card's tooltip has ``money``)."""
    if abs(amount) >= 1_000_000:
        return f"${amount / 1_000_000:,.2f}M"
    if abs(amount) >= 10_000:
        return f"${amount / 1000:,.1f}k"
    return f"${amount:,.0f}"


def metric_help(metric: str) -> str | None:
    """The glossary's definition of a trend metric, for its label's tooltip."""
    term = METRIC_GLOSSARY.get(metric)
    return describe(term) if term in GLOSSARY else None


def metric_text(metric: str, value: float) -> str:
    """A trend metric's value as a card shows it: rates as %, money with its symbol."""
    fmt = charts.metric_format(metric)
    if fmt == charts.PERCENT:
        return f"{value:.1%}"
    if fmt == charts.MONEY:
        return _compact_money(value)
    if fmt == charts.DECIMAL:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def metric_card(
    label: str, metric: str, value: float, previous: float | None, compare: bool = True
) -> None:
    """A bordered metric with its change against ``previous`` when comparing: rates move in
    percentage points, counts and money in percent; the tooltip defines the metric and gives
    the previous value."""
    is_rate = charts.metric_format(metric) == charts.PERCENT
    delta = change_text(value, previous, is_rate) if compare else None
    notes = [metric_help(metric) or ""]
    if charts.metric_format(metric) == charts.MONEY:
        notes.append(f"Exactly {money(value)}.")
    if compare:
        notes.append(
            "Previous period: "
            + (metric_text(metric, previous) if previous is not None else "not covered by the data")
            + "."
        )
    st.metric(
        label,
        metric_text(metric, value),
        delta,
        # a falling bounce rate is good news
        delta_color="inverse" if metric == "bounce_rate" else "normal",
        help=" ".join(n for n in notes if n) or None,
        border=True,
    )


def kpi(figure: Kpi, compare: bool = True) -> None:
    """A headline KPI card (``metric_card`` of its figures)."""
    metric_card(figure.label, figure.metric, figure.value, figure.previous, compare)


def money_column(label: str, help: str | None = None) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, format="dollar", help=help)


def readable(name: str) -> str:
    """A column name as a header: ``conversion_rate`` -> "Conversion rate"."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def trend_columns(frame_columns: list[str]) -> dict:
    """column_config for trend rows: labels from the metric names, rates as %, money in $."""
    config: dict = {}
    for name in frame_columns:
        label = TREND_METRICS.get(name) or readable(name)
        fmt = charts.metric_format(name)
        help = metric_help(name)
        if name in ("day", "week_start", "dimension", "dimension_value", "is_complete"):
            continue
        if fmt == charts.PERCENT:
            config[name] = percent(label, help=help)
        elif fmt == charts.MONEY:
            config[name] = money_column(label, help=help)
        elif fmt == charts.DECIMAL:
            config[name] = number(label, "%.2f", help=help)
        else:
            # rounded, not truncated: a period's daily mean of users reads as on its card
            config[name] = number(label, "%.0f", help=help)
    return config
