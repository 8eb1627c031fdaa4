"""The summary of the latest period: facts from the tables, a narrative, its provenance.

Dagster-free. ``gather_facts`` reads whatever of the tables exists (daily_trends is the only
one required) and returns plain numbers; ``deterministic_narrative`` writes a text from them
with no model; ``llm_prompt`` asks a model to write the same story from the same facts only.
"""

import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import polars as pl

from ubap_assets.core.metrics import (
    describe,
    overall_complete_days,
    period_kpis,
    split_periods,
)
from ubap_assets.core.summary_incidents import incident_facts, incident_sentence
from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import table_exists

PERIOD_DAYS = 7
# Tables the summary reads when present; daily_trends is required.
OPTIONAL_TABLES: tuple[str, ...] = (
    t.INCIDENTS,
    t.ANOMALY_HISTORY,
    t.ANOMALIES,
    t.SEGMENT_TRENDS,
    t.FUNNEL_DAILY,
    t.ANOMALY_SCORES,
    t.SEGMENT_PROFILES,
    t.USER_PREDICTIONS,
    t.REC_EVALUATION,
)
LLM_LABEL = "Written by Gemini from the facts below"
DETERMINISTIC_LABEL = "Deterministic summary (no LLM)"


@dataclass
class Facts:
    as_of: date | None
    period_start: date | None
    period_end: date | None
    data: dict = field(default_factory=dict)
    tables_read: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.data, default=str, sort_keys=True)


def _clean(value: object) -> object:
    """JSON-friendly, rounded, never NaN."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, 4)
    return value


def _change(cur: float, prev: float | None) -> float | None:
    if prev is None or prev == 0:
        return None
    return round((cur - prev) / prev, 4)


def _kpis(frame: pl.DataFrame) -> dict:
    """The period's KPIs (``core.metrics.period_kpis``) rounded for the facts."""
    kpis = period_kpis(frame)
    if not kpis:
        return {}
    return {
        "days": kpis["days"],
        "sessions": int(kpis["sessions"]),
        "events": int(kpis["events"]),
        "page_views": int(kpis["page_views"]),
        "purchases": int(kpis["purchases"]),
        "revenue": round(kpis["revenue"], 2),
        "new_users": int(kpis["new_users"]),
        "avg_daily_active_users": round(kpis["active_users"], 1),
        "conversion_rate": round(kpis["conversion_rate"], 4),
        "bounce_rate": round(kpis["bounce_rate"], 4),
        "mean_session_duration_s": round(kpis["mean_session_duration_s"], 1),
    }


def _read(con: duckdb.DuckDBPyConnection, name: str, facts: Facts) -> pl.DataFrame | None:
    if not table_exists(con, name):
        facts.missing.append(name)
        return None
    facts.tables_read.append(name)
    return con.execute(f'SELECT * FROM main."{name}"').pl()


def gather_facts(con: duckdb.DuckDBPyConnection, period_days: int = PERIOD_DAYS) -> Facts:
    """The numbers of the latest ``period_days`` complete days vs the period before."""
    facts = Facts(None, None, None)
    daily = _read(con, t.DAILY_TRENDS, facts)
    if daily is None:
        facts.notes.append("daily_trends is missing: materialize the trends group first")
        return facts
    overall = overall_complete_days(daily)
    if overall.height == 0:
        facts.notes.append("no complete day in daily_trends: nothing to summarise")
        return facts
    as_of = overall["day"].max()
    start = as_of - timedelta(days=period_days - 1)
    prev_start = start - timedelta(days=period_days)
    cur, prev = split_periods(overall, period_days)
    facts.as_of, facts.period_start, facts.period_end = as_of, start, as_of
    k_cur, k_prev = _kpis(cur), _kpis(prev)
    if k_prev.get("days", 0) < period_days:
        facts.notes.append(
            f"the previous period has {k_prev.get('days', 0)} complete day(s) of {period_days}: "
            "changes are indicative"
        )
    changes = {
        m: _change(k_cur[m], k_prev.get(m))
        for m in (
            "sessions",
            "revenue",
            "avg_daily_active_users",
            "conversion_rate",
            "bounce_rate",
            "purchases",
            "new_users",
        )
    }
    data: dict = {
        "as_of": str(as_of),
        "period": {"start": str(start), "end": str(as_of), "days": period_days},
        "kpis": k_cur,
        "previous_period": k_prev,
        "relative_change": changes,
    }
    # Breakdown by device: the biggest mover in sessions.
    by_device = daily.filter(
        (pl.col("dimension") == "device") & pl.col("is_complete") & (pl.col("day") >= prev_start)
    )
    if by_device.height:
        g = by_device.group_by("dimension_value").agg(
            pl.col("sessions").filter(pl.col("day") >= start).sum().alias("cur"),
            pl.col("sessions").filter(pl.col("day") < start).sum().alias("prev"),
        )
        data["sessions_by_device"] = {
            r["dimension_value"]: {
                "sessions": int(r["cur"]),
                "change": _change(r["cur"], r["prev"]),
            }
            for r in g.sort("cur", descending=True).iter_rows(named=True)
        }

    anomaly_data, read, missing = incident_facts(con, start, as_of)
    data.update(anomaly_data)
    facts.tables_read += read
    facts.missing += missing
    scores = _read(con, t.ANOMALY_SCORES, facts)
    if scores is not None and scores.height:
        row = scores.filter((pl.col("detector") == "ensemble") & (pl.col("kind") == "overall"))
        if row.height:
            r = row.row(0, named=True)
            data["anomaly_detection_quality"] = {
                k: _clean(r[k]) for k in ("precision", "recall", "f1", "injected")
            }

    segment_trends = _read(con, t.SEGMENT_TRENDS, facts)
    if segment_trends is not None:
        segment_trends = segment_trends.filter(
            pl.col("is_complete") & (pl.col("segment_id") != "all")
        )
        if segment_trends.height:
            g = (
                segment_trends.filter(pl.col("day") >= prev_start)
                .group_by("segment_name")
                .agg(
                    pl.col("sessions").filter(pl.col("day") >= start).sum().alias("sessions"),
                    pl.col("sessions").filter(pl.col("day") < start).sum().alias("prev_sessions"),
                    pl.col("converted_sessions").filter(pl.col("day") >= start).sum().alias("conv"),
                    pl.col("revenue").filter(pl.col("day") >= start).sum().alias("revenue"),
                )
            )
            data["segments"] = [
                {
                    "segment": r["segment_name"],
                    "sessions": int(r["sessions"]),
                    "sessions_change": _change(r["sessions"], r["prev_sessions"]),
                    "conversion_rate": round(r["conv"] / r["sessions"], 4)
                    if r["sessions"]
                    else 0.0,
                    "revenue": round(float(r["revenue"]), 2),
                }
                for r in g.sort("sessions", descending=True).iter_rows(named=True)
            ]
        else:
            facts.notes.append("segment_trends has no per-segment rows (user_segments missing)")

    profiles = _read(con, t.SEGMENT_PROFILES, facts)
    if profiles is not None and profiles.height and "segment_name" in profiles.columns:
        cols = [
            c for c in ("segment_name", "users", "share", "buyer_share") if c in profiles.columns
        ]
        data["segment_profiles"] = [
            {k: _clean(v) for k, v in r.items()}
            for r in profiles.select(cols).iter_rows(named=True)
        ]

    funnel = _read(con, t.FUNNEL_DAILY, facts)
    if funnel is not None and funnel.height:
        f = funnel.filter(pl.col("is_complete") & (pl.col("day") >= prev_start))
        steps = (
            f.group_by("step_index", "step")
            .agg(
                pl.col("sessions").filter(pl.col("day") >= start).sum().alias("cur"),
                pl.col("sessions").filter(pl.col("day") < start).sum().alias("prev"),
            )
            .sort("step_index")
        )
        if steps.height:
            first, first_prev = steps["cur"][0], steps["prev"][0]
            data["funnel"] = {
                "steps": {r["step"]: int(r["cur"]) for r in steps.iter_rows(named=True)},
                "overall_conversion": round(steps["cur"][-1] / first, 4) if first else None,
                "previous_overall_conversion": (
                    round(steps["prev"][-1] / first_prev, 4) if first_prev else None
                ),
            }
            worst = (
                steps.with_columns((pl.col("cur") / pl.col("cur").shift(1)).alias("conv"))
                .drop_nulls("conv")
                .filter(pl.col("conv").is_finite())
                .sort("conv")
                .head(1)
            )
            if worst.height:
                data["funnel"]["weakest_step"] = {
                    "step": worst["step"][0],
                    "step_conversion": round(worst["conv"][0], 4),
                }

    preds = _read(con, t.USER_PREDICTIONS, facts)
    if preds is not None and preds.height:
        p: dict = {"users_scored": preds.height}
        # a task without a model (insufficient data) has null scores and a note saying why
        for task, note in (("conversion", "conversion_note"), ("at_risk", "bounce_note")):
            if note in preds.columns and preds[note].null_count() < preds.height:
                p[f"{task}_not_scored"] = preds[note].drop_nulls()[0]
        mean = preds["conversion_probability"].mean() if "conversion_probability" in preds else None
        if mean is not None:
            p["mean_conversion_probability"] = _clean(float(mean))
            p["users_above_50pct"] = preds.filter(pl.col("conversion_probability") >= 0.5).height
        if "at_risk" in preds.columns and "at_risk_not_scored" not in p:
            p["users_at_risk"] = preds.filter(pl.col("at_risk").fill_null(False)).height
        if "reason_1" in preds.columns and "conversion_rank" in preds.columns:
            top = preds.sort("conversion_rank").head(100)["reason_1"].drop_nulls()
            if top.len():
                p["top_reason_among_top_100"] = top.mode().sort()[0]
        data["predictions"] = p

    rec = _read(con, t.REC_EVALUATION, facts)
    if rec is not None and rec.height and "ndcg_at_k" in rec.columns:
        data["recommendations"] = _recommendation_facts(rec)

    data["missing_tables"] = list(facts.missing)
    data["notes"] = list(facts.notes)
    facts.data = data
    return facts


# --- text ------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _num(x: float | int) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}".rstrip("0").rstrip(".")


def _value(metric: str, x: float) -> str:
    return _rate(x) if metric.endswith("_rate") else _num(x)


def _recommendation_facts(rec: pl.DataFrame) -> dict:
    """The served method on the test window (with n users and its interval), against the best
    baseline; or the evaluation's own note where it had too little data to score."""
    if "status" in rec.columns and (rec["status"] != "ok").all():
        return {"status": rec["status"][0], "note": rec["note"][0] if "note" in rec.columns else ""}
    scored = rec.filter(pl.col("ndcg_at_k").is_not_null())
    served = scored.filter(pl.col("is_served")) if "is_served" in scored.columns else scored.head(0)
    best = (served if served.height else scored.sort("ndcg_at_k", descending=True)).row(
        0, named=True
    )
    r = {"served_method": best["method"], "ndcg_at_k": _clean(best["ndcg_at_k"])}
    for k in ("ndcg_ci_low", "ndcg_ci_high", "users_evaluated", "hr_at_k", "coverage", "k"):
        if k in best:
            r[k] = _clean(best[k])
    base = scored.filter(pl.col("is_baseline")) if "is_baseline" in scored.columns else None
    if base is not None and base.height:
        b = base.sort("ndcg_at_k", descending=True).row(0, named=True)
        r["best_baseline"] = b["method"]
        r["baseline_ndcg_at_k"] = _clean(b["ndcg_at_k"])
        r["lift_over_baseline"] = _change(best["ndcg_at_k"], b["ndcg_at_k"])
    return r


def deterministic_narrative(facts: Facts) -> str:
    """A plain text summary built only from ``facts`` (no model)."""
    d = facts.data
    if not d.get("kpis"):
        return "No complete day of data to summarise yet. " + " ".join(facts.notes)
    k, c = d["kpis"], d["relative_change"]
    lines = [
        f"**Latest {d['period']['days']} days, {d['period']['start']} to "
        f"{d['period']['end']}**: "
        f"{k['sessions']:,} sessions ({_pct(c['sessions'])} vs the previous "
        f"{d['period']['days']} days), {_num(k['avg_daily_active_users'])} active users a day "
        f"({_pct(c['avg_daily_active_users'])}), revenue {_num(k['revenue'])} "
        f"({_pct(c['revenue'])}). Session conversion rate {_rate(k['conversion_rate'])} "
        f"({_pct(c['conversion_rate'])}), bounce rate {_rate(k['bounce_rate'])} "
        f"({_pct(c['bounce_rate'])}), {k['new_users']:,} new users.",
    ]
    lines.append(incident_sentence(d, d["period"]["days"], _value))
    segs = d.get("segments")
    if segs:
        top = segs[0]
        # The biggest mover among segments with at least 5% of the sessions (tiny ones are noise).
        total = sum(x["sessions"] for x in segs) or 1
        sizable = [x for x in segs if x["sessions"] >= 0.05 * total] or segs
        mover = max(sizable, key=lambda x: abs(x["sessions_change"] or 0))
        lines.append(
            f"Segments: {top['segment']} brings the most sessions ({top['sessions']:,}, "
            f"session conversion {_rate(top['conversion_rate'])}); biggest change: "
            f"{mover['segment']} ({_pct(mover['sessions_change'])} sessions)."
        )
    else:
        lines.append("Segments: not available (user_segments / segment_trends missing).")
    fun = d.get("funnel")
    if fun and fun["overall_conversion"] is None:
        lines.append(
            "Funnel: no session in the period had a page view, so the funnel has no first step "
            "(a log of purchases only?)."
        )
    elif fun:
        weak = fun.get("weakest_step")
        lines.append(
            f"Funnel: {_rate(fun['overall_conversion'])} of sessions with a page view reach a "
            f"purchase (previously {_rate(fun['previous_overall_conversion'])})"
            + (
                f"; weakest step {weak['step']} ({_rate(weak['step_conversion'])})."
                if weak
                else "."
            )
        )
    pr = d.get("predictions")
    if pr:
        text = f"Predictions: {pr['users_scored']:,} users scored"
        if "users_above_50pct" in pr:
            text += f", {pr['users_above_50pct']:,} with a purchase probability of 50% or more"
        if "users_at_risk" in pr:
            text += f", {pr['users_at_risk']:,} at risk of bouncing"
        for task in ("conversion", "at_risk"):
            if f"{task}_not_scored" in pr:
                text += f"; no {task.replace('_', '-')} scores ({pr[f'{task}_not_scored']})"
        if "top_reason_among_top_100" in pr:
            text += f" (top reason among the top 100: {pr['top_reason_among_top_100']})"
        lines.append(text + ".")
    else:
        lines.append("Predictions: not available (user_predictions missing).")
    rec = d.get("recommendations")
    if rec and "served_method" not in rec:
        note = (
            rec["note"]
            if rec["note"].startswith(rec["status"])
            else f"{rec['status']}: {rec['note']}"
        )
        lines.append(f"Recommendations: not scored ({note}).")
    elif rec:
        text = (
            f"Recommendations: served method {rec['served_method']} (test NDCG@k {rec['ndcg_at_k']}"
        )
        if rec.get("ndcg_ci_low") is not None:
            text += f", 95% interval {rec['ndcg_ci_low']}–{rec['ndcg_ci_high']}"
        if rec.get("users_evaluated") is not None:
            text += f", {rec['users_evaluated']:,} users"
        if "best_baseline" in rec:
            text += f"; {_pct(rec['lift_over_baseline'])} vs the {rec['best_baseline']} baseline"
        lines.append(text + ").")
    else:
        lines.append("Recommendations: not available (rec_evaluation missing).")
    if facts.notes:
        lines.append("Notes: " + "; ".join(facts.notes) + ".")
    return "\n\n".join(lines)


SYSTEM_PROMPT = (
    "You are the analyst who writes the morning summary of a website's behaviour data for a "
    "product team. Use ONLY the numbers in the FACTS JSON; never invent or estimate a number, "
    "never compute new figures beyond simple restatement. Write 120 to 220 words of markdown: "
    "a one-sentence headline, then short paragraphs on what changed, incidents, segments, the "
    "funnel, predictions and recommendations. Speak of incidents (with their description and "
    "top contributor), not single flagged points; if points could not be scored, say how "
    "many and why, and never call the period quiet when nothing could be scored. If a "
    "section's data is missing, say in one short sentence that it is not available. Percent "
    "changes are relative to the previous period of the same length. Rates are fractions "
    "(0.05 = 5%)."
)


# The glossary terms the facts use, given to the model so it names each rate as the app does.
PROMPT_TERMS = (
    "session_conversion_rate",
    "bounce_rate",
    "buyer_share",
    "funnel_step_conversion",
    "funnel_completion",
)


def llm_prompt(facts: Facts) -> str:
    definitions = "\n".join(f"- {describe(term)}" for term in PROMPT_TERMS)
    return (
        "DEFINITIONS (use these names; kpis.conversion_rate is the session conversion rate):\n"
        + definitions
        + "\nFACTS:\n"
        + json.dumps(facts.data, default=str, indent=1, sort_keys=True)
    )


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


def ungrounded_numbers(text: str, facts: Facts) -> list[str]:
    """Numbers in ``text`` that match nothing in the facts (as value, percent, or rounded)."""
    known: set[float] = set()

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, int | float) and not isinstance(x, bool):
            known.update({float(x), float(x) * 100})
        elif isinstance(x, str):
            for m in _NUMBER.findall(x):
                known.add(float(m.replace(",", "")))

    walk(facts.data)

    def close(v: float, k: float) -> bool:
        a, b = abs(v), abs(k)
        return abs(a - b) <= 0.051 or (b >= 1 and abs(a - b) / b < 0.01)

    out = []
    for raw in _NUMBER.findall(text):
        v = float(raw.replace(",", ""))
        if abs(v) < 10 and v == int(v):
            continue  # small counts and list markers ("3 anomalies", "1.")
        if not any(close(v, k) for k in known):
            out.append(raw)
    return out


SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "as_of": pl.Date,
    "period_start": pl.Date,
    "period_end": pl.Date,
    "mode": pl.String,
    "model": pl.String,
    "narrative": pl.String,
    "facts_json": pl.String,
    "source_tables": pl.String,
    "missing_tables": pl.String,
    "fallback_reason": pl.String,
    "run_id": pl.String,
    "generated_at": pl.Datetime("us"),
}


def provenance_footer(facts: Facts, run_id: str, mode: str, model: str) -> str:
    who = f"{LLM_LABEL} ({model})" if mode == "llm" else DETERMINISTIC_LABEL
    missing = ", ".join(facts.missing) or "none"
    return (
        f"\n\n---\n_{who}. Sources: {', '.join(facts.tables_read) or 'none'} "
        f"(run {run_id}). Missing: {missing}._"
    )


def summary_frame(
    facts: Facts,
    narrative: str,
    mode: str,
    model: str,
    fallback_reason: str,
    run_id: str,
    generated_at,
) -> pl.DataFrame:
    text = narrative.strip()
    if mode != "llm":
        text = f"_{DETERMINISTIC_LABEL}: {fallback_reason}._\n\n{text}"
    text += provenance_footer(facts, run_id, mode, model)
    row = {
        "as_of": facts.as_of,
        "period_start": facts.period_start,
        "period_end": facts.period_end,
        "mode": mode,
        "model": model if mode == "llm" else "none",
        "narrative": text,
        "facts_json": facts.to_json(),
        "source_tables": ",".join(facts.tables_read),
        "missing_tables": ",".join(facts.missing),
        "fallback_reason": fallback_reason,
        "run_id": run_id,
        "generated_at": generated_at,
    }
    return pl.DataFrame([row], schema=SUMMARY_SCHEMA)
