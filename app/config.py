"""One typed settings object, read from `ADVISOR_*` env vars and an optional `.env`."""

import ipaddress
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import ConfigError

# A list setting takes JSON or a comma-separated string: ADVISOR_CORS_ORIGINS=https://a,https://b
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything configurable; see README for what each one changes."""

    model_config = SettingsConfigDict(env_prefix="ADVISOR_", env_file=".env", extra="ignore")

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    data_dir: Path = Path("data")
    collection: str = "advisor"

    chroma_host: str | None = None
    chroma_port: int = 8000

    # "onnx" (fast, exported once at index time) or "sentence-transformers" (reference).
    embedder: str = "onnx"
    k: int = Field(default=5, ge=1, le=50)
    chunk_max_chars: int = Field(default=1200, ge=200)
    abstain_threshold: float = 0.30

    max_question_chars: int = 2000
    max_history_turns: int = 50

    llm: str | None = None  # e.g. "ollama:llama3.1" or "openai:gpt-4o-mini"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = 20.0

    host: str = "127.0.0.1"
    port: int = 7860

    # Chat tools. The standard Slack variable names work too.
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ADVISOR_SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET"),
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ADVISOR_SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN")
    )
    slack_api_url: str = "https://slack.com/api/"
    slack_in_channel: bool = False  # answer slash commands for the whole channel to see
    mattermost_token: SecretStr | None = None

    # Load limits on /api/ask and the chat tools' routes (README "Operating it"); 0 = no limit.
    rate_limit_per_minute: float = Field(default=60, ge=0)
    rate_limit_burst: int = Field(default=20, ge=1)
    # Slack and Mattermost reach us from a few addresses shared by a whole workspace.
    chat_rate_limit_per_minute: float = Field(default=600, ge=0)
    chat_rate_limit_burst: int = Field(default=60, ge=1)
    max_concurrent: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=1)
    max_queue: int = Field(default=64, ge=0)
    # Default: 10 s, or room for both LLM calls (condense, answer) plus the offline fallback.
    request_timeout_s: float = Field(default=10.0, gt=0)
    # Addresses or networks of reverse proxies whose X-Forwarded-For names the client.
    trusted_proxies: CommaList = []

    cors_origins: CommaList = []  # no CORS headers at all unless origins are listed
    admin_token: SecretStr | None = None  # /api/feedback; required beyond loopback
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ConfigError(
                    f"ADVISOR_TRUSTED_PROXIES: {item!r} is not an IP address or network; "
                    "list your reverse proxies' addresses, e.g. 127.0.0.1,10.0.0.0/8."
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _llm_fits_in_time_limit(self) -> "Settings":
        # A slow LLM must time out early enough for the offline engine to answer in time.
        if not self.llm:
            return self
        needed = 2 * self.llm_timeout_s
        if "request_timeout_s" not in self.model_fields_set:
            self.request_timeout_s = max(self.request_timeout_s, needed + 5)
        elif self.request_timeout_s <= needed:
            raise ConfigError(
                f"ADVISOR_REQUEST_TIMEOUT_S ({self.request_timeout_s:g} s) must exceed twice "
                f"ADVISOR_LLM_TIMEOUT_S ({self.llm_timeout_s:g} s), so that a slow LLM still "
                "leaves time for the offline fallback: raise the first or lower the second."
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, "0.0.0.0" or "::" reach further


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
