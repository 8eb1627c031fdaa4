"""The LLM resource: Gemini through the real google-genai client, or nothing.

The key comes from the ``GEMINI_API_KEY`` environment variable (or the ``api_key`` field), the
model from ``UBAP_GEMINI_MODEL`` (default ``gemini-2.5-flash``). ``base_url`` points the client
at another endpoint (a proxy, or the local fake server of the tests). Without a key the
resource is disabled and callers fall back to their deterministic text; every failure
(HTTP error after retries, timeout, malformed or empty answer) raises ``LLMError``.
"""

import dagster as dg
from pydantic import Field

from ubap_assets.settings import DEFAULT_GEMINI_MODEL, Settings, current_settings

KEY_ENV = Settings.variable("gemini_api_key")
MODEL_ENV = Settings.variable("gemini_model")
BASE_URL_ENV = Settings.variable("gemini_base_url")
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)


class LLMError(RuntimeError):
    """The model could not produce a usable answer; the message says why."""


class GeminiResource(dg.ConfigurableResource):
    """Text generation with Gemini (google-genai). Disabled when no API key is configured."""

    api_key: str = Field(default="", description=f"API key; empty = read ${KEY_ENV}.")
    model: str = Field(
        default="", description=f"Model name; empty = ${MODEL_ENV} or {DEFAULT_GEMINI_MODEL}."
    )
    base_url: str = Field(
        default="", description=f"Endpoint override (tests, proxies); empty = ${BASE_URL_ENV}."
    )
    timeout_s: float = Field(default=30.0, description="Timeout of one HTTP attempt, seconds.")
    max_attempts: int = Field(default=3, description="HTTP attempts (429/5xx are retried).")
    retry_initial_delay_s: float = Field(default=1.0, description="First back-off delay.")
    retry_max_delay_s: float = Field(default=8.0, description="Longest back-off delay.")
    temperature: float = Field(default=0.2, description="Sampling temperature.")
    # Gemini 2.5 models think before answering and the thinking counts against this limit.
    max_output_tokens: int = Field(default=4096, description="Longest answer, in tokens.")
    thinking_budget: int = Field(
        default=-1, description="Thinking tokens (0 = off on Flash); -1 = the model's default."
    )

    def resolved_key(self) -> str:
        return (self.api_key or current_settings().gemini_api_key).strip()

    def resolved_model(self) -> str:
        return (self.model or current_settings().gemini_model or DEFAULT_GEMINI_MODEL).strip()

    def resolved_base_url(self) -> str:
        return (self.base_url or current_settings().gemini_base_url).strip()

    @property
    def enabled(self) -> bool:
        return bool(self.resolved_key())

    def _client(self):
        from google import genai
        from google.genai import types

        retry = types.HttpRetryOptions(
            attempts=max(1, self.max_attempts),
            initial_delay=self.retry_initial_delay_s,
            max_delay=self.retry_max_delay_s,
            exp_base=2.0,
            jitter=0.1,
            http_status_codes=list(RETRY_STATUS_CODES),
        )
        options = types.HttpOptions(
            timeout=int(self.timeout_s * 1000),  # milliseconds
            retry_options=retry,
            base_url=self.resolved_base_url() or None,
        )
        return genai.Client(api_key=self.resolved_key(), http_options=options)

    def generate(self, prompt: str, system: str | None = None) -> str:
        """The model's text answer to ``prompt``; raises LLMError on any failure."""
        if not self.enabled:
            raise LLMError(f"no API key: set {KEY_ENV} to use Gemini")
        from google.genai import types

        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=self.temperature,
            max_output_tokens=self.max_output_tokens,
            thinking_config=(
                types.ThinkingConfig(thinking_budget=self.thinking_budget)
                if self.thinking_budget >= 0
                else None
            ),
        )
        try:
            with self._client() as client:
                response = client.models.generate_content(
                    model=self.resolved_model(), contents=prompt, config=config
                )
                text = response.text
        except Exception as err:  # noqa: BLE001 - every failure becomes a fallback reason
            raise LLMError(_describe(err)) from err
        if not text or not text.strip():
            raise LLMError("malformed response: no text in the model's answer")
        return text.strip()


def _describe(err: Exception) -> str:
    """A one-line reason for the metadata (no secrets: the key is never in these messages)."""
    import httpx
    from google.genai import errors

    if isinstance(err, errors.APIError):
        return f"HTTP {err.code} from Gemini after retries: {str(err.message or err.status)[:200]}"
    if isinstance(err, httpx.TimeoutException | TimeoutError) or "Timeout" in type(err).__name__:
        return f"timeout: {type(err).__module__}.{type(err).__name__}"
    if isinstance(err, httpx.HTTPError):
        return f"connection error: {type(err).__name__}: {str(err)[:200]}"
    return f"malformed response or client error: {type(err).__name__}: {str(err)[:200]}"
