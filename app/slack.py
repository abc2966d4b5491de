"""Slack: a signed slash command and app mentions, answered with Block Kit."""

import json
import logging
import re
import textwrap
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from app.answer import (
    MAX_HISTORY_TURNS,
    MAX_TURN_CHARS,
    Answer,
    AskRequest,
    Turn,
    clean_question,
    printable,
)
from app.chain import Advisor
from app.config import Settings
from app.deps import current_advisor
from app.errors import AdvisorError, BadRequest, NotConfigured, Unauthorized

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat tools"])

REAL_CLOCK = Clock()

MAX_SKEW_S = 300  # Slack's rule: refuse timestamps more than 5 minutes from our clock
EVENT_TTL_S = 3600  # Slack retries a delivery 3 times within about 5 minutes
TEXT_LIMIT = 3000  # Block Kit's limit for a section's or context element's text
EXAMPLES = (
    "Node or Python for a real-time chat app?",
    "Which is better for a machine-learning API?",
    "Node.js or Python for a command-line tool?",
    "Python or Node for web scraping?",
)
_shorten = partial(textwrap.shorten, width=200, placeholder="…")
_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_MRKDWN = [  # applied in order, to text whose &<> are already escaped
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"*\1*"),
    (re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M), r"*\1*"),
    (re.compile(r"^([ \t]*)[-+*][ \t]+", re.M), "\\1• "),
    (re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s|]+)\)"), r"<\2|\1>"),
]


class Seen:
    """A bounded, thread-safe set whose keys expire after `ttl_s` (oldest dropped when full)."""

    def __init__(self, ttl_s: float, now: Callable[[], float], maxsize: int = 10_000) -> None:
        self.ttl_s, self.now, self.maxsize = ttl_s, now, maxsize
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def on(cls, request: Request, name: str, ttl_s: float, now: Callable[[], float]) -> "Seen":
        """The app's set called `name` (on app.state, so each app, and each test, has its own)."""
        if not hasattr(request.app.state, name):  # on the event loop: no race to create it
            setattr(request.app.state, name, cls(ttl_s, now))
        seen: Seen = getattr(request.app.state, name)
        return seen

    def add(self, key: str) -> bool:
        """Remember `key`; False when it is already remembered and not yet expired."""
        with self._lock:
            now = self.now()
            while self._expiry and (
                next(iter(self._expiry.values())) <= now or len(self._expiry) >= self.maxsize
            ):
                self._expiry.popitem(last=False)
            if self._expiry.get(key, now) > now:
                return False
            self._expiry[key] = now + self.ttl_s
            return True


def app_clock(app: Any) -> Clock:
    """Signatures' clock: `app.state.slack_clock` (tests pin time with it), else the real one."""
    clock = getattr(app.state, "slack_clock", None)
    return clock if isinstance(clock, Clock) else REAL_CLOCK


async def verified_body(request: Request) -> bytes:
    """The raw body, once exactly one fresh, valid, never-seen Slack signature vouches for it."""
    settings: Settings = request.app.state.settings
    app, clock = request.app, app_clock(request.app)
    secret = settings.slack_signing_secret
    if secret is None or not secret.get_secret_value().strip():
        raise NotConfigured("Slack is not configured: set ADVISOR_SLACK_SIGNING_SECRET.")
    signatures = request.headers.getlist("x-slack-signature")
    stamps = request.headers.getlist("x-slack-request-timestamp")
    if len(signatures) != 1 or len(stamps) != 1:
        raise Unauthorized("Send exactly one X-Slack-Signature and one X-Slack-Request-Timestamp.")
    signature, stamp = signatures[0], stamps[0]
    if not signature.isascii():  # hmac.compare_digest raises on non-ASCII text
        raise Unauthorized("The Slack signature does not match: check the signing secret.")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise Unauthorized("X-Slack-Request-Timestamp must be Unix seconds.")
    if abs(clock.now() - int(stamp)) > MAX_SKEW_S:
        raise Unauthorized("The Slack request is over 5 minutes old or ahead: check the clock.")
    body = await request.body()
    try:
        valid = SignatureVerifier(secret.get_secret_value(), clock).is_valid(body, stamp, signature)
    except UnicodeDecodeError:  # not UTF-8, so not signed by Slack
        valid = False
    if not valid:
        raise Unauthorized("The Slack signature does not match: check the signing secret.")
    # A signature stays valid while its timestamp does (at most 10 minutes from now); the
    # lambda reads the app's clock late, so a pinned test clock expires entries too.
    seen = Seen.on(request, "slack_signatures", 2 * MAX_SKEW_S, lambda: app_clock(app).now())
    if not seen.add(signature):
        raise Unauthorized("This Slack request was already received (a replay).")
    return body


def escape(text: str) -> str:
    """Text made literal for Slack: the only three characters Slack's markup needs escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_to_plain(text: str) -> str:
    """Slack's wire text as plain text: mentions dropped, links to labels, &<> unescaped."""

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "!")):
            return ""
        if target.startswith("#"):
            return f"#{label}" if label else target
        return label or target

    text = _SLACK_MARKUP.sub(plain, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def to_mrkdwn(markdown: str) -> str:
    """Markdown as Slack mrkdwn: **bold** → *bold*, headings bold, bullets, links, &<> escaped."""
    text = escape(markdown)
    for pattern, replacement in _MRKDWN:
        text = pattern.sub(replacement, text)
    return text.strip()


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]*$", "", text[: limit - 1]) + "…"  # never cut an entity in half


def answer_blocks(answer: Answer) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks (as dicts) for an answer, every text escaped."""
    label = answer.verdict_label
    body = to_mrkdwn(answer.answer)
    section = f"*Q:* {escape(' '.join(answer.question.split()))}\n"
    section += (f"*Verdict: {escape(label)}*\n" if label else "") + body
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_clip(section)))]
    if answer.citations:
        sources = "\n".join(
            f"[{c.n}] {escape(c.section)} — “{escape(_shorten(c.quote))}”" for c in answer.citations
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(sources))]))
    plain = escape(re.sub(r"\*\*(.+?)\*\*", r"\1", answer.answer))
    fallback = _clip(f"{label}: {plain}" if label else plain)
    return fallback, [block.to_dict() for block in blocks]


def usage(command: str = "/advisor") -> str:
    """How to ask, with example questions, as Slack mrkdwn."""
    cmd = escape(command)
    lines = [
        "*Stack Advisor* answers “Node.js or Python for X?” from its knowledge base, with sources.",
        f"Ask with `{cmd} your question`, or mention me in a channel or thread. For example:",
        *(f"• `{cmd} {escape(q)}`" for q in EXAMPLES),
    ]
    return "\n".join(lines)


def build_request(text: str, settings: Settings, history: list[Turn] | None = None) -> AskRequest:
    """The advisor's request for a chat message; BadRequest says why a question is refused."""
    question = clean_question(text, settings.max_question_chars)
    turns = (history or [])[-min(settings.max_history_turns, MAX_HISTORY_TURNS) :]
    try:
        return AskRequest(question=question, history=turns)
    except ValidationError as exc:
        raise BadRequest(f"The conversation cannot be used: {exc.errors()[0]['msg']}") from None


def sorry(exc: AdvisorError) -> str:
    """What to tell a chat user when a question could not be answered."""
    if isinstance(exc, BadRequest):
        return f"I can't answer that: {exc}"
    log.warning("Chat tool could not answer: %s: %s", exc.code, exc)
    return f"Stack Advisor can't answer right now: {exc}"


def _reply(text: str, response_type: str = "ephemeral") -> dict[str, Any]:
    return {"response_type": response_type, "text": text}


@router.post("/slack/commands")
async def slack_command(request: Request, background: BackgroundTasks) -> dict[str, Any]:
    """Answer `/advisor <question>`: inline, or through `response_url` when an LLM may be slow."""
    form = dict(parse_qsl((await verified_body(request)).decode(), keep_blank_values=True))
    settings: Settings = request.app.state.settings
    text = slack_to_plain(form.get("text", ""))
    if text.lower() in ("", "help"):
        return _reply(usage(form.get("command") or "/advisor"))
    visibility = "in_channel" if settings.slack_in_channel else "ephemeral"
    try:
        ask = build_request(text, settings)
        advisor = current_advisor(request)
        if settings.llm:
            url = form.get("response_url", "")
            if urlsplit(url).scheme not in ("https", "http"):
                raise BadRequest("Slack sent no response_url to answer to.")
            background.add_task(_answer_later, advisor, ask, url, visibility)
            return _reply("Thinking…")  # Slack gives up after 3 seconds; an LLM may take longer
        answer = await run_in_threadpool(advisor.ask, ask)
    except AdvisorError as exc:
        return _reply(escape(sorry(exc)))
    fallback, blocks = answer_blocks(answer)
    return {"response_type": visibility, "text": fallback, "blocks": blocks}


def _answer_later(advisor: Advisor, ask: AskRequest, url: str, visibility: str) -> None:
    try:
        fallback, blocks = answer_blocks(advisor.ask(ask))
        reply: dict[str, Any] = {"text": fallback, "blocks": blocks, "response_type": visibility}
    except AdvisorError as exc:
        reply = _reply(escape(sorry(exc)))
    try:
        sent = WebhookClient(url, timeout=10).send(**reply)
    except OSError as exc:  # the URL itself is a credential: never log it
        log.warning("Could not post the answer to Slack's response_url: %s", exc)
        return
    if sent.status_code != 200:
        log.warning("Slack's response_url refused the answer: HTTP %s", sent.status_code)


@router.post("/slack/events")
async def slack_events(request: Request, background: BackgroundTasks) -> dict[str, Any]:
    """Events API: the URL check, and app mentions answered once in their thread."""
    try:
        payload = json.loads(await verified_body(request))
    except (ValueError, RecursionError):
        raise BadRequest("The Slack event is not JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The Slack event is not a JSON object.")
    if payload.get("type") == "url_verification":
        return {"challenge": str(payload.get("challenge", ""))}
    event = payload.get("event") if payload.get("type") == "event_callback" else None
    if not isinstance(event, dict) or event.get("type") != "app_mention":
        return {"ok": True}
    if event.get("bot_id") or event.get("subtype") == "bot_message":
        return {"ok": True}  # never answer a bot: two bots would talk forever
    settings: Settings = request.app.state.settings
    if settings.slack_bot_token is None:
        log.warning("Ignoring a Slack mention: set ADVISOR_SLACK_BOT_TOKEN to answer mentions.")
        return {"ok": True}
    advisor = current_advisor(request)  # before dedupe, so Slack's retry finds it unanswered
    event_id = str(payload.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
    if not Seen.on(request, "slack_events", EVENT_TTL_S, time.monotonic).add(event_id):
        retry = request.headers.get("x-slack-retry-num")
        log.info("Slack retry %s of event %s: already answered", retry, event_id)
        return {"ok": True}
    background.add_task(_answer_mention, settings, advisor, event)
    return {"ok": True}


def _answer_mention(settings: Settings, advisor: Advisor, event: dict[str, Any]) -> None:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    base_url = settings.slack_api_url.rstrip("/") + "/"  # WebClient joins "base" + "method"
    client = WebClient(token=token, base_url=base_url, timeout=10)
    channel, ts = str(event.get("channel")), str(event.get("ts"))
    thread_ts = str(event["thread_ts"]) if event.get("thread_ts") else None
    question = slack_to_plain(str(event.get("text", "")))
    blocks: list[dict[str, Any]] | None = None
    try:
        if question.lower() in ("", "help"):
            text = usage()
        else:
            history = _thread_history(client, channel, thread_ts, ts) if thread_ts else []
            text, blocks = answer_blocks(advisor.ask(build_request(question, settings, history)))
    except AdvisorError as exc:
        text = escape(sorry(exc))
    try:
        client.chat_postMessage(
            channel=channel, thread_ts=thread_ts or ts, text=text, blocks=blocks
        )
    except (SlackApiError, OSError) as exc:
        log.warning("Could not post the answer to Slack: %s", exc)


def _thread_history(client: WebClient, channel: str, thread_ts: str, ts: str) -> list[Turn]:
    try:
        reply = client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
    except (SlackApiError, OSError) as exc:
        log.warning("Could not read the Slack thread; answering without it: %s", exc)
        return []
    turns: list[Turn] = []
    for message in reply.get("messages") or []:
        if not isinstance(message, dict) or not _earlier(message.get("ts"), ts):
            continue  # the mention itself, and anything said after it
        content = printable(slack_to_plain(str(message.get("text", ""))))[:MAX_TURN_CHARS]
        if content:
            bot = message.get("bot_id") or message.get("subtype") == "bot_message"
            turns.append(Turn(role="assistant" if bot else "user", content=content))
    return turns


def _earlier(ts: object, than: str) -> bool:
    # Slack timestamps have 16 significant digits: too many for a float to compare.
    with suppress(InvalidOperation):
        return Decimal(str(ts)) < Decimal(than)
    return False
