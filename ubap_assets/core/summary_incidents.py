"""The summary's anomaly part, told in incidents: what happened in the period, and what could
not be scored and why (never "none flagged" when nothing could be scored).

Dagster-free. ``incident_facts`` reads incidents and anomaly_history (or, from pipelines older
than the incidents table, the flagged points of ``anomalies``); ``incident_sentence`` writes
the summary's line from those facts only.
"""

import math
from datetime import date

import duckdb
import polars as pl

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists
from ubap_assets.warehouse.queries.anomalies import ANOMALY_POINT_COLUMNS

MAX_LISTED = 5  # incidents in the facts (the narrative names up to 3)
_SEVERITY_ORDER = "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END"


def _clean(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, date):
        return str(value)
    return value


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


def _incidents(con: duckdb.DuckDBPyConnection, start: date, end: date) -> dict:
    """Incidents overlapping [start, end], the most severe first."""
    frame = con.execute(
        f"""SELECT incident_id, start_day, end_day, ongoing, headline_metric, headline_label,
                   direction, headline_dimension, headline_dimension_value, relative_change,
                   severity, top_contributor, top_share, description
            FROM main."{t.INCIDENTS}" WHERE end_day >= ? AND start_day <= ?
            ORDER BY {_SEVERITY_ORDER}, abs(peak_score) DESC, end_day DESC, incident_id""",
        [start, end],
    ).pl()
    return {
        "count": frame.height,
        "high": frame.filter(pl.col("severity") == "high").height,
        "ongoing": frame.filter(pl.col("ongoing")).height,
        "top": [
            {k: _clean(v) for k, v in row.items()}
            for row in frame.head(MAX_LISTED).iter_rows(named=True)
        ],
    }


def _coverage(con: duckdb.DuckDBPyConnection, start: date, end: date) -> dict | None:
    """How much of the period was scored: points, unscored points by reason (the note's text
    before ':'), and the scopes with no scored point at all. None without the note column."""
    if "note" not in _columns(con, t.ANOMALY_HISTORY):
        return None
    table = f'main."{t.ANOMALY_HISTORY}"'
    total, unscored = con.execute(
        f"SELECT count(*), count(*) FILTER (note IS NOT NULL) FROM {table} "
        "WHERE day BETWEEN ? AND ?",
        [start, end],
    ).fetchone()
    reasons = con.execute(
        f"""SELECT trim(split_part(note, ':', 1)) AS reason, count(*) AS points,
                   arg_max(note, day) AS example
            FROM {table} WHERE day BETWEEN ? AND ? AND note IS NOT NULL
            GROUP BY 1 ORDER BY points DESC, reason LIMIT 5""",
        [start, end],
    ).fetchall()
    scopes = con.execute(
        f"""SELECT dimension || '=' || dimension_value AS scope, arg_max(note, day) AS reason
            FROM {table} WHERE day BETWEEN ? AND ?
            GROUP BY dimension, dimension_value
            HAVING count(*) FILTER (note IS NULL) = 0
            ORDER BY dimension <> 'all', scope""",
        [start, end],
    ).fetchall()
    return {
        "points": int(total),
        "scored_points": int(total - unscored),
        "unscored_points": int(unscored),
        "unscored_reasons": [
            {"reason": reason, "points": int(points), "example": example}
            for reason, points, example in reasons
        ],
        "unscored_scopes": [{"scope": scope, "reason": reason} for scope, reason in scopes],
    }


def _flagged_points(con: duckdb.DuckDBPyConnection) -> dict:
    """The older table: the latest period's flagged points (no incident grouping)."""
    frame = con.execute(f'SELECT * FROM main."{t.ANOMALIES}"').pl()
    top = frame.sort(pl.col("score").abs(), descending=True).head(MAX_LISTED)
    return {
        "count": frame.height,
        "high": frame.filter(pl.col("severity") == "high").height,
        "top": [
            {k: _clean(v) for k, v in row.items()}
            for row in top.select(ANOMALY_POINT_COLUMNS).iter_rows(named=True)
        ],
    }


def incident_facts(
    con: duckdb.DuckDBPyConnection, start: date, end: date
) -> tuple[dict, list[str], list[str]]:
    """({"incidents": ..., "anomaly_coverage": ...} or {"anomalies": ...}, tables read,
    tables missing) for the period [start, end]."""
    read, missing, data = [], [], {}
    for name in (t.INCIDENTS, t.ANOMALY_HISTORY):
        (read if table_exists(con, name) else missing).append(name)
    if t.INCIDENTS in read:
        data["incidents"] = _incidents(con, start, end)
    if t.ANOMALY_HISTORY in read:
        coverage = _coverage(con, start, end)
        if coverage is not None:
            data["anomaly_coverage"] = coverage
    if t.INCIDENTS not in read:
        if table_exists(con, t.ANOMALIES):
            read.append(t.ANOMALIES)
            data["anomalies"] = _flagged_points(con)
        else:
            missing.append(t.ANOMALIES)
    return data, read, missing


# --- text ------------------------------------------------------------------------------------


def _why(coverage: dict) -> str:
    reasons = coverage["unscored_reasons"]
    return "; ".join(f"{r['example']} ({r['points']:,} points)" for r in reasons[:3])


def _coverage_clause(coverage: dict | None) -> str:
    """' 12 of 480 points in the period could not be scored: <why>. Scopes with no scored
    point in the period: device=tablet.'"""
    if not coverage or not coverage["unscored_points"]:
        return ""
    text = (
        f" {coverage['unscored_points']:,} of {coverage['points']:,} points in the period "
        f"could not be scored: {_why(coverage)}"
    )
    scopes = [s["scope"] for s in coverage["unscored_scopes"]]
    if scopes:
        text += f". Scopes with no scored point in the period: {', '.join(scopes[:6])}"
        text += f" and {len(scopes) - 6} more" if len(scopes) > 6 else ""
    return text + "."


def _incident_item(item: dict) -> str:
    text = item["description"].rstrip(".")
    tags = [item["severity"]] + (["ongoing"] if item["ongoing"] else [])
    return f"{text} ({', '.join(tags)})"


def _point_item(point: dict, value) -> str:
    return (
        f"{point['metric']} {point['direction']} on {point['day']} ({point['dimension']}="
        f"{point['dimension_value']}: {value(point['metric'], point['value'])} vs expected "
        f"{value(point['metric'], point['expected'])}, {point['severity']})"
    )


def incident_sentence(data: dict, period_days: int, value) -> str:
    """The summary's anomaly line from ``data`` (``gather_facts``' data); ``value(metric, x)``
    formats a metric's value."""
    span = f"the last {period_days} days"
    coverage = data.get("anomaly_coverage")
    incidents = data.get("incidents")
    if incidents is not None:
        if coverage and coverage["points"] and not coverage["scored_points"]:
            return f"Incidents: none could be scored in {span}: {_why(coverage)}."
        if incidents["count"] == 0:
            scored = f" among {coverage['scored_points']:,} scored points" if coverage else ""
            return f"Incidents: none flagged in {span}{scored}." + _coverage_clause(coverage)
        shown = incidents["top"][:3]
        items = "".join(f"\n- {_incident_item(i)}." for i in shown)
        more = incidents["count"] - len(shown)
        return (
            f"Incidents: {incidents['count']} in {span} ({incidents['high']} high severity, "
            f"{incidents['ongoing']} ongoing):{items}"
            + (f"\n- and {more} more (see the Anomalies page)." if more > 0 else "")
            + (f"\n\n{_coverage_clause(coverage).strip()}" if _coverage_clause(coverage) else "")
        )
    points = data.get("anomalies")
    if points is None:
        return "Anomalies: not available (the incidents and anomalies tables are missing)."
    if points["count"] == 0:
        return f"Anomalies: none flagged in {span}." + _coverage_clause(coverage)
    items = "; ".join(_point_item(p, value) for p in points["top"][:3])
    return (
        f"Anomalies: {points['count']} flagged ({points['high']} high severity); {items}."
        + _coverage_clause(coverage)
    )
