"""The LLM resource used by the summary (bound here; the key comes from GEMINI_API_KEY)."""

import dagster as dg

from ubap_assets.lib.llm import GeminiResource


@dg.definitions
def llm_resources() -> dg.Definitions:
    return dg.Definitions(resources={"llm": GeminiResource()})
