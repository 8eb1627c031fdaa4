"""Altair charts for the dashboard: pure functions, frames in, ``alt.Chart`` out.

Every encoding is typed ("day:T", "value:Q", "segment:N") and every mark has a formatted
tooltip. Nothing here reads data or calls Streamlit, so each chart can be built in a test.
"""

from datetime import date

import altair as alt
import polars as pl

# Formats for d3-format, keyed by how a metric is measured.
PERCENT = ".1%"
NUMBER = ",.0f"
DECIMAL = ",.2f"
MONEY = "$,.0f"

_ANOMALY_RED = "#d62728"
_CATEGORIES = alt.Scale(scheme="tableau10")  # distinct hues for segments, devices, models
_BAND_BLUE = "#9ecae1"


def metric_format(metric: str) -> str:
    """The d3 number format that suits a metric from its name."""
    name = metric.lower()
    if name.endswith(("_rate", "_share", "_pct", "conversion", "retention")) or "rate" in name:
        return PERCENT
    if "revenue" in name or name.endswith("_value"):
        return MONEY
    if "duration" in name or name.startswith(("mean_", "avg_", "pages_per")):
        return DECIMAL
    return NUMBER


def format_value(value: float, d3_format: str) -> str:
    """``value`` as text in one of this module's d3 formats (for captions and cards)."""
    if d3_format == MONEY:
        return f"${value:,.0f}"
    return format(value, d3_format)


def trend_line(
    frame: pl.DataFrame,
    *,
    x: str = "day",
    y: str = "value",
    color: str | None = None,
    color_title: str | None = None,
    y_title: str = "value",
    y_format: str = NUMBER,
    height: int = 320,
    weekly: bool = False,
    previous: pl.DataFrame | None = None,
) -> alt.TopLevelMixin:
    """A time series, one straight line per ``color`` value when given, points on each value.

    ``weekly``: one tick per week (the x values are week starts). ``previous``: the period
    before, with ``x`` already moved onto the current dates and the real date in
    ``previous_day``, drawn dashed and named "previous period" in the legend.
    """
    date_format = "week of %d %b %Y" if weekly else "%a %d %b %Y"
    # one tick per week, or per day (every few days on longer ranges): never half-days
    periods = max(frame[x].n_unique(), 1) if x in frame.columns else 1
    interval = (
        {"interval": "week", "step": 1}
        if weekly or periods > 45
        else {"interval": "day", "step": 1 if periods <= 14 else 2 if periods <= 31 else 4}
    )
    axis = alt.Axis(format="%d %b", tickCount=interval, labelAngle=0)
    legend_title = color_title or (color.replace("_", " ") if color else None)
    tooltip = [
        alt.Tooltip(f"{x}:T", title="week" if weekly else "date", format=date_format),
        alt.Tooltip(f"{y}:Q", title=y_title, format=y_format),
    ]
    encoding = {
        "x": alt.X(f"{x}:T", title=None, axis=axis),
        "y": alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=y_format)),
        "tooltip": tooltip,
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=legend_title, scale=_CATEGORIES)
        tooltip.insert(0, alt.Tooltip(f"{color}:N", title=legend_title))
    line = alt.Chart(frame.with_columns(period=pl.lit("current period"))).mark_line(
        point=alt.OverlayMarkDef(size=18), interpolate="linear"
    )
    if previous is None or previous.is_empty():
        return line.encode(**encoding).properties(height=height)
    current = line.encode(**encoding, strokeDash=_PERIOD_DASH)
    before_tooltip = [
        *([alt.Tooltip(f"{color}:N", title=legend_title)] if color else []),
        alt.Tooltip("previous_day:T", title="previous period", format=date_format),
        alt.Tooltip(f"{y}:Q", title=y_title, format=y_format),
    ]
    before_encoding = {**encoding, "tooltip": before_tooltip}
    if not color:
        before_encoding["color"] = alt.value(_PREVIOUS_GREY)
    before = (
        alt.Chart(previous.with_columns(period=pl.lit("previous period")))
        .mark_line(interpolate="linear", opacity=0.8)
        .encode(**before_encoding, strokeDash=_PERIOD_DASH)
    )
    return alt.layer(current, before).properties(height=height)


_PREVIOUS_GREY = "#8c8c8c"
_PERIOD_DASH = alt.StrokeDash(
    "period:N",
    title="period",
    scale=alt.Scale(domain=["current period", "previous period"], range=[[1, 0], [5, 4]]),
    legend=alt.Legend(orient="bottom", symbolType="stroke"),
)


def bars(
    frame: pl.DataFrame,
    *,
    category: str,
    value: str,
    value_title: str = "value",
    value_format: str = NUMBER,
    color: str | None = None,
    sort: str = "-x",
    height: int | None = None,
) -> alt.Chart:
    """Horizontal bars, sorted by value, one per ``category``."""
    tooltip = [
        alt.Tooltip(f"{category}:N", title=category.replace("_", " ")),
        alt.Tooltip(f"{value}:Q", title=value_title, format=value_format),
    ]
    encoding = {
        "y": alt.Y(
            f"{category}:N",
            title=None,
            sort=sort,
            axis=alt.Axis(labelOverlap=False, labelLimit=220),
        ),
        "x": alt.X(
            f"{value}:Q",
            title=value_title,
            # whole counts get whole ticks (no "0 0 0 1 1 1" axis on small numbers)
            axis=alt.Axis(format=value_format, tickMinStep=1)
            if value_format == NUMBER
            else alt.Axis(format=value_format),
        ),
        "tooltip": tooltip,
    }
    if color:
        encoding["color"] = alt.Color(
            f"{color}:N", title=color.replace("_", " "), scale=_CATEGORIES
        )
        tooltip.append(alt.Tooltip(f"{color}:N", title=color.replace("_", " ")))
    rows = max(frame.height, 1)
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(**encoding)
        .properties(height=height or min(50 + 30 * rows, 600))
    )


# The funnel's two rates, named as in the glossary (docs/metrics.md).
OF_FIRST_STEP = "% of first step"
STEP_RATE = "step % (of previous step)"


def funnel_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """``label``: "34.0% of first step · step 80.3%" (the first step: "100% · start")."""
    return frame.with_columns(
        label=pl.when(pl.col("step_order") == pl.col("step_order").min())
        .then(pl.lit("100% of first step"))
        .otherwise(
            (pl.col("overall_conversion") * 100).round(1).cast(pl.String)
            + pl.lit("% of first step · step ")
            + (pl.col("step_conversion") * 100).round(1).cast(pl.String)
            + pl.lit("%")
        )
    )


def funnel(frame: pl.DataFrame) -> alt.Chart:
    """Funnel bars: sessions reaching each step, each labelled with its share of the first step
    and its step rate (the share kept from the step before).

    Columns: ``step`` (label), ``step_order`` (int), ``sessions``, ``step_conversion``,
    ``overall_conversion`` and ``drop_off`` (shares, 0..1).
    """
    base = alt.Chart(funnel_labels(frame)).encode(
        y=alt.Y(
            "step:N",
            sort=alt.EncodingSortField("step_order", order="ascending"),
            title=None,
            axis=alt.Axis(labelOverlap=False),
        ),
        x=alt.X(
            "sessions:Q",
            title="sessions reaching the step",
            axis=alt.Axis(format=NUMBER),
            scale=alt.Scale(domainMax=float(frame["sessions"].max() or 1) * 1.45),
        ),
        tooltip=[
            alt.Tooltip("step:N", title="step"),
            alt.Tooltip("sessions:Q", title="sessions", format=NUMBER),
            alt.Tooltip("overall_conversion:Q", title=OF_FIRST_STEP, format=PERCENT),
            alt.Tooltip("step_conversion:Q", title=STEP_RATE, format=PERCENT),
            alt.Tooltip("drop_off:Q", title="dropped since previous step", format=PERCENT),
        ],
    )
    bar = base.mark_bar(color="#4c78a8")
    label = base.mark_text(align="left", dx=4).encode(text="label:N")
    return (bar + label).properties(height=60 + 44 * max(frame.height, 1))


def funnel_breakdown(frame: pl.DataFrame, group_title: str = "segment") -> alt.Chart:
    """Each step's share of the first step, one bar per group (segment, device, source).

    Columns: ``group``, ``step``, ``step_order``, ``sessions``, ``overall_conversion``;
    ``group_title`` names the groups in the legend and tooltip.
    """
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y(
                "step:N",
                sort=alt.EncodingSortField("step_order", order="ascending"),
                title=None,
                axis=alt.Axis(labelOverlap=False),
            ),
            yOffset=alt.YOffset("group:N"),
            x=alt.X(
                "overall_conversion:Q",
                title=OF_FIRST_STEP,
                axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color("group:N", title=group_title, scale=_CATEGORIES),
            tooltip=[
                alt.Tooltip("group:N", title=group_title),
                alt.Tooltip("step:N", title="step"),
                alt.Tooltip("sessions:Q", title="sessions", format=NUMBER),
                alt.Tooltip("overall_conversion:Q", title=OF_FIRST_STEP, format=PERCENT),
            ],
        )
        .properties(height=alt.Step(9))
    )


def retention_heatmap(frame: pl.DataFrame) -> alt.Chart:
    """Cohort week × weeks since first seen, coloured by the share of the cohort still active.

    Columns: ``cohort_week`` (date), ``weeks_since`` (int), ``retention`` (0..1),
    ``cohort_users``, ``active_users`` and, optionally, ``pre_data`` (the first week's cohort
    also holds everyone active before the data starts: labelled so on the axis).
    """
    name = pl.col("cohort_week").cast(pl.String)
    if "pre_data" in frame.columns:
        name = pl.when(pl.col("pre_data")).then(name + pl.lit(" (incl. pre-data users)"))
        name = name.otherwise(pl.col("cohort_week").cast(pl.String))
    cohorts = frame.with_columns(cohort=name)
    base = alt.Chart(cohorts).encode(
        x=alt.X("weeks_since:O", title="weeks since first seen", axis=alt.Axis(labelAngle=0)),
        y=alt.Y(
            "cohort:O",
            title="cohort (week of first visit)",
            sort="ascending",
            axis=alt.Axis(labelLimit=260),
        ),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "retention:Q",
            title="retained",
            scale=alt.Scale(scheme="blues", domain=[0, 1]),
            legend=alt.Legend(format=".0%"),
        ),
        tooltip=[
            alt.Tooltip("cohort:O", title="cohort week"),
            alt.Tooltip("weeks_since:O", title="weeks since"),
            alt.Tooltip("cohort_users:Q", title="cohort size", format=NUMBER),
            alt.Tooltip("active_users:Q", title="active", format=NUMBER),
            alt.Tooltip("retention:Q", title="retained", format=PERCENT),
        ],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("retention:Q", format=".0%"),
        color=alt.condition("datum.retention > 0.5", alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(height=alt.Step(30))


def stacked_bars(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    y_title: str = "users",
    height: int = 320,
) -> alt.Chart:
    """Stacked columns per period (lifecycle states per week); ``x`` is a date column."""
    periods = frame.with_columns(period=pl.col(x).cast(pl.String))
    label = x.replace("_", " ")
    return (
        alt.Chart(periods)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=label, axis=alt.Axis(labelAngle=-45)),
            y=alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=NUMBER)),
            color=alt.Color(f"{color}:N", title=color.replace("_", " "), scale=_CATEGORIES),
            tooltip=[
                alt.Tooltip("period:O", title=label),
                alt.Tooltip(f"{color}:N", title=color.replace("_", " ")),
                alt.Tooltip(f"{y}:Q", title=y_title, format=NUMBER),
            ],
        )
        .properties(height=height)
    )


def segment_map(frame: pl.DataFrame) -> alt.Chart:
    """Users in two dimensions (``x``, ``y``), coloured by ``segment``; zoomable."""
    return (
        alt.Chart(frame)
        .mark_circle(size=22, opacity=0.65)
        .encode(
            x=alt.X("x:Q", title="component 1"),
            y=alt.Y("y:Q", title="component 2"),
            color=alt.Color("segment:N", title="segment", scale=_CATEGORIES),
            tooltip=[
                alt.Tooltip("user_id:N", title="user"),
                alt.Tooltip("segment:N", title="segment"),
                alt.Tooltip("x:Q", title="component 1", format=DECIMAL),
                alt.Tooltip("y:Q", title="component 2", format=DECIMAL),
            ],
        )
        .properties(height=420)
        .interactive()
    )


def model_curve(frame: pl.DataFrame, *, curve: str) -> alt.Chart:
    """ROC or precision-recall curves, one line per ``model``, over ``x`` and ``y`` in 0..1."""
    roc = curve == "roc"
    x_title, y_title = (
        ("false positive rate", "true positive rate")
        if roc
        else (
            "recall",
            "precision",
        )
    )
    lines = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("x:Q", title=x_title, scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("y:Q", title=y_title, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model:N", title="model", scale=_CATEGORIES),
            order=alt.Order("point:Q"),
            tooltip=[
                alt.Tooltip("model:N", title="model"),
                alt.Tooltip("x:Q", title=x_title, format=".3f"),
                alt.Tooltip("y:Q", title=y_title, format=".3f"),
            ],
        )
    )
    if roc:
        chance = (
            alt.Chart(pl.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
            .mark_line(strokeDash=[4, 4], color="gray")
            .encode(x="x:Q", y="y:Q")
        )
        return (chance + lines).properties(height=320)
    return lines.properties(height=320)


def anomaly_timeline(frame: pl.DataFrame, *, y_title: str, y_format: str) -> alt.Chart:
    """A metric's daily values over its expected range, flagged days marked in red.

    Columns: ``day``, ``value``, ``expected``, ``lower``, ``upper``, ``is_anomaly`` (bool),
    ``direction``, ``score`` and ``severity``.
    """
    base = alt.Chart(frame).encode(x=alt.X("day:T", title=None))
    band = base.mark_area(opacity=0.35, color=_BAND_BLUE).encode(
        y=alt.Y("lower:Q", title=y_title, axis=alt.Axis(format=y_format)),
        y2="upper:Q",
        tooltip=[
            alt.Tooltip("day:T", title="date", format="%a %d %b %Y"),
            alt.Tooltip("lower:Q", title="expected from", format=y_format),
            alt.Tooltip("upper:Q", title="expected to", format=y_format),
        ],
    )
    expected = base.mark_line(strokeDash=[4, 3], color="#3182bd").encode(y="expected:Q")
    actual = base.mark_line(color="#333333").encode(
        y="value:Q",
        tooltip=[
            alt.Tooltip("day:T", title="date", format="%a %d %b %Y"),
            alt.Tooltip("value:Q", title=y_title, format=y_format),
            alt.Tooltip("expected:Q", title="expected", format=y_format),
        ],
    )
    flagged = (
        base.transform_filter("datum.is_anomaly")
        .mark_point(filled=True, size=110, color=_ANOMALY_RED)
        .encode(
            y="value:Q",
            shape=alt.Shape("direction:N", title="direction", legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("day:T", title="date", format="%a %d %b %Y"),
                alt.Tooltip("value:Q", title=y_title, format=y_format),
                alt.Tooltip("expected:Q", title="expected", format=y_format),
                alt.Tooltip("direction:N", title="direction"),
                alt.Tooltip("score:Q", title="score", format=".1f"),
                alt.Tooltip("severity:N", title="severity"),
            ],
        )
    )
    return (band + expected + actual + flagged).properties(height=280)


def grouped_metric_bars(
    frame: pl.DataFrame, *, group: str, metric: str, value: str, highlight: str
) -> alt.Chart:
    """One small bar chart per ``metric`` comparing each ``group`` (methods against baselines)."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y(f"{group}:N", title=None, axis=alt.Axis(labelOverlap=False)),
            x=alt.X(f"{value}:Q", title=None, axis=alt.Axis(format=".2f")),
            color=alt.Color(f"{highlight}:N", title=highlight.replace("_", " "), scale=_CATEGORIES),
            tooltip=[
                alt.Tooltip(f"{group}:N", title=group),
                alt.Tooltip(f"{metric}:N", title="metric"),
                alt.Tooltip(f"{value}:Q", title="value", format=".4f"),
            ],
        )
        .properties(width=220, height=24 * max(frame[group].n_unique(), 1))
        .facet(facet=alt.Facet(f"{metric}:N", title=None), columns=3)
        .resolve_scale(x="independent")
    )


# --- incidents --------------------------------------------------------------------------------

INCIDENT_BANDS = "incident_bands"  # the name of the shaded incident marks (tests find them)
INCIDENT_LABELS = "incident_labels"
_INCIDENT_FILL = {"high": "#d62728", "medium": "#ff7f0e", "low": "#bcbd22"}
_OTHER_INCIDENT = "#7f7f7f"


def incident_bands(windows: pl.DataFrame) -> alt.LayerChart:
    """Shaded incident windows with their headline written at the top.

    Columns (``data.anomalies.incident_windows``): ``start``, ``end`` (the day after the last),
    ``label``, ``description``, ``severity`` and ``involves`` (the chart's metric is one of the
    incident's metrics: coloured by severity; otherwise grey).
    """
    fill = alt.condition(
        "datum.involves",
        alt.Color(
            "severity:N",
            scale=alt.Scale(domain=list(_INCIDENT_FILL), range=list(_INCIDENT_FILL.values())),
            legend=None,
        ),
        alt.value(_OTHER_INCIDENT),
    )
    tooltip = [
        alt.Tooltip("label:N", title="incident"),
        alt.Tooltip("description:N", title="what happened"),
        alt.Tooltip("severity:N", title="severity"),
    ]
    # Named, with an ARIA role: the SVG groups and items say what they are.
    bands = (
        alt.Chart(windows, name=INCIDENT_BANDS)
        .mark_rect(opacity=0.16, ariaRoleDescription="incident window")
        .encode(x=alt.X("start:T"), x2="end:T", color=fill, tooltip=tooltip, description="label:N")
    )
    labels = (
        alt.Chart(windows, name=INCIDENT_LABELS)
        .mark_text(
            align="left",
            baseline="top",
            dx=3,
            dy=3,
            fontSize=11,
            ariaRoleDescription="incident label",
        )
        .encode(x="start:T", y=alt.value(0), text="label:N", color=fill, tooltip=tooltip)
    )
    return bands + labels


def annotate_incidents(
    chart: alt.TopLevelMixin, windows: pl.DataFrame, start: date | None = None
) -> alt.TopLevelMixin:
    """``chart`` with the incident windows shaded behind it (unchanged when there are none).

    A window that began before ``start`` (the chart's first day) is drawn from ``start``, so
    it does not stretch the time axis. The layered chart renders as SVG, so each band and
    label is an element of the page.
    """
    if windows.is_empty():
        return chart
    if start is not None:
        windows = windows.with_columns(
            pl.when(pl.col("start") < pl.lit(start))
            .then(pl.lit(start))
            .otherwise(pl.col("start"))
            .cast(windows.schema["start"])
            .alias("start")
        )
    layered = alt.layer(incident_bands(windows), chart).resolve_scale(color="independent")
    return layered.properties(usermeta={"embedOptions": {"renderer": "svg"}})


def contributor_bars(frame: pl.DataFrame, *, value_format: str) -> alt.Chart:
    """Each dimension value's share of an incident's change, one row of bars per dimension.

    Columns (incident_contributors for one metric): ``dimension``, ``dimension_value``,
    ``share`` (0..1), ``change``, ``expected``, ``observed`` and ``rank``.
    """
    # Grouped by dimension (shares add up within one), largest share first within each.
    shown = frame.with_columns(
        value=pl.col("dimension") + pl.lit("=") + pl.col("dimension_value"),
        order=pl.col("dimension").rank("dense") * 1000 + pl.col("rank"),
    )
    base = alt.Chart(shown).encode(
        y=alt.Y(
            "value:N",
            title=None,
            sort=alt.EncodingSortField("order", order="ascending"),
            axis=alt.Axis(labelLimit=170, labelOverlap=False),
        ),
        x=alt.X(
            "share:Q",
            title="share of the change",
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format=".0%"),
        ),
        tooltip=[
            alt.Tooltip("dimension:N", title="dimension"),
            alt.Tooltip("dimension_value:N", title="value"),
            alt.Tooltip("share:Q", title="share of the change", format=".0%"),
            alt.Tooltip("change:Q", title="change", format=value_format),
            alt.Tooltip("expected:Q", title="expected", format=value_format),
            alt.Tooltip("observed:Q", title="observed", format=value_format),
        ],
    )
    bars_ = base.mark_bar().encode(
        color=alt.Color("dimension:N", scale=_CATEGORIES, legend=None)  # the labels say it
    )
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("share:Q", format=".0%"))
    return (bars_ + text).properties(height=40 + 24 * max(shown.height, 1))


def sensitivity_curve(frame: pl.DataFrame) -> alt.LayerChart:
    """Incidents each threshold would have raised on the history, the current one marked.

    Columns (anomaly_sensitivity): ``threshold``, ``incidents``, ``incidents_per_30_days``,
    ``flagged_points`` and ``is_current``.
    """
    tooltip = [
        alt.Tooltip("threshold:Q", title="threshold", format=".2f"),
        alt.Tooltip("incidents:Q", title="incidents", format=NUMBER),
        alt.Tooltip("incidents_per_30_days:Q", title="per 30 days", format=DECIMAL),
        alt.Tooltip("flagged_points:Q", title="flagged points", format=NUMBER),
    ]
    base = alt.Chart(frame).encode(x=alt.X("threshold:Q", title="threshold (|score|)"))
    line = base.mark_line(point=True, color="#4c78a8").encode(
        y=alt.Y(
            "incidents:Q", title="incidents raised on the history", axis=alt.Axis(tickMinStep=1)
        ),
        tooltip=tooltip,
    )
    current = frame.filter(pl.col("is_current"))
    rule = (
        alt.Chart(current)
        .mark_rule(color=_ANOMALY_RED, strokeDash=[5, 3], size=2)
        .encode(x="threshold:Q", tooltip=tooltip)
    )
    label = (
        alt.Chart(current)
        .mark_text(align="left", baseline="top", dx=4, dy=4, color=_ANOMALY_RED)
        .encode(
            x="threshold:Q",
            y=alt.value(0),
            text=alt.Text("label:N"),
        )
        .transform_calculate(label="'current: ' + format(datum.threshold, '.1f')")
    )
    return (line + rule + label).properties(height=260)
