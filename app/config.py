"""One typed settings object, read from `ADVISOR_*` env vars and an optional `.env`."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
