"""The error tree: every message says what went wrong and how to fix it."""


class AdvisorError(Exception):
    """Base of every error the product reports to a user (never a traceback)."""

    code = "advisor_error"


class ConfigError(AdvisorError):
    """A setting is missing or invalid."""

    code = "config_error"


class CorpusError(AdvisorError):
    """The corpus is missing, empty, or holds a file that cannot be read."""

    code = "corpus_error"


class ModelError(AdvisorError):
    """The embedding model is missing, corrupt or cannot be loaded."""

    code = "model_error"


class IndexUnavailable(AdvisorError):
    """The index is missing, corrupt, stale or its Chroma server cannot be reached."""

    code = "index_unavailable"


class BadRequest(AdvisorError, ValueError):
    """A question or history that cannot be answered as given (a ValueError for pydantic)."""

    code = "bad_request"


class LLMUnavailable(AdvisorError):
    """The configured LLM backend failed, timed out or returned something unusable."""

    code = "llm_unavailable"


class Unauthorized(AdvisorError):
    """A request whose signature or token does not check out."""

    code = "unauthorized"


class NotConfigured(AdvisorError):
    """A route whose secret or token has not been configured."""

    code = "not_configured"


class PayloadTooLarge(AdvisorError):
    """A request body over the size limit."""

    code = "payload_too_large"


class Busy(AdvisorError):
    """Refused because of load; `retry_after_s` says when to try again."""

    code = "busy"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(Busy):
    """One client sent more requests than its rate limit allows."""

    code = "rate_limited"


class Overloaded(Busy):
    """Every answering slot is taken and the wait queue is full (or moved too slowly)."""

    code = "overloaded"


class TimedOut(AdvisorError):
    """Answering took longer than the per-request time limit."""

    code = "timeout"
