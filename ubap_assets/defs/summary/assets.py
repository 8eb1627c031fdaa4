"""The narrative summary of the latest period (group "summary")."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from ubap_assets.core import summary as s
from ubap_assets.lib.llm import KEY_ENV, GeminiResource, LLMError
from ubap_assets.warehouse import tables as t

GROUP = "summary"
OWNERS = ["team:analytics"]


class SummaryConfig(dg.Config):
    period_days: int = Field(
        default=s.PERIOD_DAYS, description="Length of the latest period, in complete days."
    )
    use_llm: bool = Field(
        default=True, description="Ask Gemini when a key is set; false = always deterministic."
    )


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "gemini"},
    deps=[t.DAILY_TRENDS, *s.OPTIONAL_TABLES],
)
def summary(
    context: dg.AssetExecutionContext,
    config: SummaryConfig,
    warehouse: DuckDBResource,
    llm: GeminiResource,
) -> dg.Output:
    """One row: the narrative of the latest period (what changed, anomalies, segments,
    predictions, recommendations) by Gemini or, without a key or on failure, a deterministic
    text from the same facts, with the facts and their provenance."""
    if config.period_days < 1:
        raise dg.Failure(description=f"period_days must be at least 1 (got {config.period_days})")
    with warehouse.get_connection() as con:
        facts = s.gather_facts(con, config.period_days)
    model = llm.resolved_model()
    mode, reason, text, ungrounded = "deterministic", "", "", []
    if not facts.data.get("kpis"):
        reason = "no data to summarise"
    elif not config.use_llm:
        reason = "LLM disabled by config (use_llm=false)"
    elif not llm.enabled:
        reason = f"{KEY_ENV} is not set"
    else:
        try:
            text = llm.generate(s.llm_prompt(facts), system=s.SYSTEM_PROMPT)
            mode = "llm"
            ungrounded = s.ungrounded_numbers(text, facts)
        except LLMError as err:
            reason = f"Gemini failed: {err}"
            context.log.warning(reason)
    if mode != "llm":
        text = s.deterministic_narrative(facts)
    frame = s.summary_frame(
        facts,
        text,
        mode,
        model,
        reason,
        context.run_id,
        datetime.now(UTC).replace(tzinfo=None),
    )
    return dg.Output(
        frame,
        metadata={
            "mode": mode,
            "model": model if mode == "llm" else "none",
            "fallback_reason": reason or "none",
            "as_of": str(facts.as_of),
            "source_tables": ", ".join(facts.tables_read),
            "missing_tables": ", ".join(facts.missing) or "none",
            "ungrounded_numbers": dg.MetadataValue.text(", ".join(ungrounded) or "none"),
            "narrative": dg.MetadataValue.md(frame["narrative"][0]),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in facts.notes) or "none"),
        },
    )


@dg.asset_check(
    blocking=True,
    asset=t.SUMMARY,
    description=("The summary has one row with a non-empty narrative that names its sources."),
)
def summary_has_narrative(summary: pl.DataFrame) -> dg.AssetCheckResult:
    ok = summary.height == 1 and len(summary["narrative"][0].strip()) > 40
    return dg.AssetCheckResult(
        passed=ok, metadata={"rows": summary.height, "mode": summary["mode"][0] if ok else ""}
    )
