"""The one `Answer` type every interface returns, and the request it answers."""

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.errors import BadRequest

Verdict = Literal["node", "python", "tie"]
Strength = Literal["clear", "slight"]

VERDICT_LABELS: dict[str, str] = {"node": "Node.js", "python": "Python", "tie": "Tie"}
MAX_QUESTION_CHARS = 2000
MAX_HISTORY_TURNS = 50
MAX_TURN_CHARS = 20_000
# Invisible direction overrides: they can make an echoed question read unlike what was asked.
BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


class Turn(BaseModel):
    """One earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_TURN_CHARS)

    @field_validator("content")
    @classmethod
    def _plain_content(cls, value: str) -> str:
        bad = _unprintable(value)
        if bad:
            raise BadRequest(f"A history turn contains {bad}; send plain text.")
        return value


class AskRequest(BaseModel):
    """A question with its conversation so far."""

    model_config = ConfigDict(extra="forbid")

    question: str
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)

    @field_validator("question")
    @classmethod
    def _clean_question(cls, value: str) -> str:
        return clean_question(value)


class Citation(BaseModel):
    """A numbered source: `quote` appears verbatim in chunk `chunk_id`."""

    n: int
    chunk_id: str
    source: str
    section: str
    quote: str


class Timings(BaseModel):
    """Milliseconds spent in each stage of the chain."""

    condense: float = 0.0
    retrieve: float = 0.0
    answer: float = 0.0
    total: float = 0.0


class Answer(BaseModel):
    """A verdict, its reason in Markdown with [n] markers, and the cited sources."""

    question: str
    standalone_question: str
    verdict: Verdict | None = None
    strength: Strength | None = None
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    abstained: bool = False
    engine: str
    kb_version: str
    timings_ms: Timings = Field(default_factory=Timings)
    flags: list[str] = Field(default_factory=list)

    @property
    def verdict_label(self) -> str | None:
        """The verdict as people read it, e.g. "Node.js (slight edge)"; None without one."""
        if self.verdict is None:
            return None
        label = VERDICT_LABELS[self.verdict]
        return f"{label} (slight edge)" if self.strength == "slight" else label


def clean_question(value: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """Strip a question (and its direction overrides); refuse empty, oversized or binary input."""
    if not isinstance(value, str):
        raise BadRequest("The question must be text.")
    text = value.translate(BIDI_CONTROLS).strip()
    if not text:
        raise BadRequest(
            "The question is empty: ask something like 'Node or Python for a chat app?'"
        )
    if len(text) > limit:
        raise BadRequest(f"The question is {len(text)} characters long; keep it under {limit}.")
    bad = _unprintable(text)
    if bad:
        raise BadRequest(f"The question contains {bad}; send plain text.")
    return text


def printable(text: str) -> str:
    """`text` without the control characters and lone surrogates a `Turn` refuses."""
    return "".join(c for c in text if not _refused(c))


def _refused(char: str) -> bool:
    # Cs: a lone surrogate, which cannot be encoded as UTF-8 (it would fail the JSON reply).
    category = unicodedata.category(char)
    return category == "Cs" or (category == "Cc" and char not in "\n\t\r")


def _unprintable(text: str) -> str:
    """What is wrong with `text`, e.g. "control characters (e.g. '\\x00')"; "" if nothing."""
    bad = next((c for c in text if _refused(c)), None)
    if bad is None:
        return ""
    kind = "a lone surrogate" if unicodedata.category(bad) == "Cs" else "control characters"
    return f"{kind} (e.g. {bad!r})"
