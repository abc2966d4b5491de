"""Mattermost: a token-checked slash command or outgoing webhook, answered in Markdown."""

import hmac
import json
import re
import string
import textwrap
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.answer import Answer
from app.config import Settings
from app.deps import current_advisor
from app.errors import AdvisorError, BadRequest, NotConfigured, Unauthorized
from app.slack import EXAMPLES, build_request, sorry

router = APIRouter(tags=["chat tools"])

MAX_ANSWER_CHARS = 12_000  # Mattermost refuses posts over 16,383 characters
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ZWSP = "\u200b"  # after "@" it stops a mention (and its notification) from forming


def escape_markdown(text: str) -> str:
    """User text shown literally: one line, punctuation escaped, no HTML, links or mentions."""
    out: list[str] = []
    for char in " ".join(text.split()):
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char == "@":
            out.append("@" + _ZWSP)
        elif char in string.punctuation:
            # Escaping ":", "/" and "." too keeps URLs and www. names from autolinking.
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def safe_markdown(markdown: str) -> str:
    """Our own Markdown kept as Markdown, minus raw HTML, images and @mentions."""
    text = "".join(_ENTITIES.get(char, char) for char in markdown).replace("![", "!\\[")
    return re.sub(r"(?<![\w.])@(?=\w)", "@" + _ZWSP, text)


def answer_markdown(answer: Answer) -> str:
    """An answer as one Mattermost message: question, verdict, answer and numbered sources."""
    body = answer.answer
    if len(body) > MAX_ANSWER_CHARS:
        body = body[: MAX_ANSWER_CHARS - 1] + "…"
    lines = [f"**Question:** {escape_markdown(answer.question)}"]
    if answer.verdict_label:
        lines.append(f"**Verdict: {answer.verdict_label}**")
    lines += ["", safe_markdown(body)]
    if answer.citations:
        lines += ["", "**Sources**"]
        for c in answer.citations:
            quote = escape_markdown(textwrap.shorten(c.quote, 200, placeholder="…"))
            lines.append(f"- \\[{c.n}\\] {escape_markdown(c.section)} — “{quote}”")
    return "\n".join(lines)


def usage(command: str = "/advisor") -> str:
    """How to ask, with example questions, as Markdown."""
    cmd = " ".join(command.replace("`", "").split()) or "/advisor"  # shown in a code span
    lines = [
        "**Stack Advisor** answers “Node.js or Python for X?” from its knowledge base, "
        "with sources.",
        f"Ask with `{cmd} your question`. For example:",
        *(f"- `{cmd} {q}`" for q in EXAMPLES),
    ]
    return "\n".join(lines)


def _fields(body: bytes, content_type: str) -> dict[str, Any] | None:
    # None: a body that cannot be read; reported only once the token checks out.
    try:
        if content_type.split(";")[0].strip().lower() == "application/json":
            data = json.loads(body)
            return data if isinstance(data, dict) else None
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (ValueError, RecursionError):  # JSON and UTF-8 errors, and absurdly nested JSON
        return None


def _header_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "token" else None


@router.post("/mattermost/commands")
async def mattermost_command(request: Request) -> dict[str, str]:
    """Answer a Mattermost slash command or outgoing webhook (form-encoded or JSON)."""
    settings: Settings = request.app.state.settings
    expected = settings.mattermost_token.get_secret_value() if settings.mattermost_token else ""
    if not expected.strip():
        raise NotConfigured("Mattermost is not configured: set ADVISOR_MATTERMOST_TOKEN.")
    fields = _fields(await request.body(), request.headers.get("content-type", ""))
    token = _header_token(request)
    if token is None:
        token = str((fields or {}).get("token") or "")
    # Bytes, because compare_digest refuses non-ASCII strings.
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("The Mattermost token does not match: check ADVISOR_MATTERMOST_TOKEN.")
    if fields is None:
        raise BadRequest("Send the command form-encoded or as a JSON object.")
    text = str(fields.get("text") or "").strip()
    trigger = str(fields.get("trigger_word") or "")
    if trigger and text.lower().startswith(trigger.lower()):
        text = text[len(trigger) :].strip()
    # An outgoing webhook's reply is always a channel post; a slash command answers privately.
    visibility = "in_channel" if trigger else "ephemeral"
    if text.lower() in ("", "help"):
        return {"response_type": "ephemeral", "text": usage(str(fields.get("command") or trigger))}
    try:
        ask = build_request(text, settings)
        answer = await run_in_threadpool(current_advisor(request).ask, ask)
    except AdvisorError as exc:
        return {"response_type": "ephemeral", "text": escape_markdown(sorry(exc))}
    return {"response_type": visibility, "text": answer_markdown(answer)}
