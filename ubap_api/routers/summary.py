"""The narrative summary of the latest period."""

import json

from fastapi import HTTPException

from ubap_api.deps import ReaderDep, guarded_router
from ubap_api.schemas import NOT_FOUND, Summary

router = guarded_router("/api/summary", "summary")


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part]


@router.get("/llm", response_model=Summary, responses=NOT_FOUND)
def llm_summary(reader: ReaderDep) -> dict:
    """The latest period in words (Gemini when configured, else deterministic), with its facts.

    The newest ``summary`` row: a Markdown ``narrative`` of the latest period (``period_start``
    to ``period_end``, the complete days up to ``as_of``) and the ``facts`` it is grounded in
    (rates as fractions 0..1, revenue in the currency of the source). ``mode`` is 'llm' when
    Gemini wrote it, else 'deterministic' with the ``fallback_reason`` (GEMINI_API_KEY not
    set, the LLM disabled by config, Gemini failed, or no data to summarise).
    ``missing_tables`` names optional inputs that were absent. One object, no paging; 404
    when the summary asset has not written a row yet."""
    row = reader.summary()
    if row is None:
        raise HTTPException(404, detail="the summary table is empty: materialize 'summary'")
    try:
        facts = json.loads(row.get("facts_json") or "{}")
    except json.JSONDecodeError:
        facts = {}
    return {
        **row,
        "facts": facts if isinstance(facts, dict) else {"facts": facts},
        "source_tables": _split(row.get("source_tables")),
        "missing_tables": _split(row.get("missing_tables")),
        "fallback_reason": row.get("fallback_reason") or "",
    }
