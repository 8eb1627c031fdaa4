"""API settings from the environment (UBAP_*), read once per process."""

from functools import cached_property, lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ubap_assets.warehouse.paths import snapshot_dir

DEFAULT_CORS_ORIGINS = "http://127.0.0.1:8501,http://localhost:8501"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UBAP_", extra="ignore")

    api_token: str | None = Field(
        default=None,
        description="UBAP_API_TOKEN: when set, every route but /health needs "
        "'Authorization: Bearer <token>'.",
    )
    cors_origins: str = Field(
        default=DEFAULT_CORS_ORIGINS,
        description="UBAP_CORS_ORIGINS: comma-separated origins allowed by CORS (the dashboard).",
    )
    snapshot_dir: Path | None = Field(
        default=None,
        description="UBAP_SNAPSHOT_DIR: where serving snapshots are published "
        "(default <UBAP_DATA_DIR>/snapshots).",
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @cached_property
    def snapshots(self) -> Path:
        # Resolved once: every request asks, and reading the project settings parses the
        # whole environment (about 1.5 ms).
        return self.snapshot_dir or snapshot_dir()


@lru_cache
def get_settings() -> Settings:
    return Settings()
