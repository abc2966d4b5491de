"""Slack: signature checks, replays, Block Kit replies, response_url and app mentions."""

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from slack_sdk.signature import Clock, SignatureVerifier
from support import FakeAdvisor

from app import slack
from app.answer import AskRequest, Turn
from app.config import Settings
from app.errors import AdvisorError, BadRequest
from app.server import create_app

SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token-0123456789"
ANSWER = (
    "**Node.js** — for a real-time chat app, the article's decision matrix picks Node.js: "
    "its event loop holds many open sockets cheaply [1].\n"
    "- Socket.IO is the mature choice [2]"
)
HOSTILE = "<script>alert(1)</script> & <@U123> <!channel>"


def fake_advisor(answer: str = ANSWER, error: AdvisorError | None = None) -> FakeAdvisor:
    return FakeAdvisor(answer, error)


# Slack's published example (docs.slack.dev, "Verifying requests from Slack").
VECTOR_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_TS = 1531420618
VECTOR_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    "%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value


class LocalServer:
    """A stdlib HTTP server on 127.0.0.1 that records requests and replies by API method."""

    def __init__(self, replies: dict[str, Any] | None = None, default: Any = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies, self.default = replies or {}, default or {"ok": True}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.handle(self)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        is_json = "json" in (h.headers.get("Content-Type") or "")
        body = json.loads(raw) if is_json else dict(parse_qsl(raw.decode()))
        method = split.path.rsplit("/", 1)[-1]
        self.requests.append(
            {
                "verb": h.command,
                "path": split.path,
                "method": method,
                "query": dict(parse_qsl(split.query)),
                "body": body,
                "auth": h.headers.get("Authorization"),
            }
        )
        reply = self.replies.get(method, self.default)
        data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
        h.send_response(200)
        kind = "text/plain" if isinstance(reply, str) else "application/json"
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk sends through HTTP(S)_PROXY when set; the local servers must be reached directly.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.httpd.shutdown()
    local.httpd.server_close()


def make_client(tmp_path: Path, advisor: FakeAdvisor, **overrides: Any) -> TestClient:
    values: dict[str, Any] = {"data_dir": tmp_path, "slack_signing_secret": SECRET, **overrides}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return TestClient(create_app(settings=settings, advisor=advisor, ui=False))  # type: ignore[arg-type]


def signed(
    body: str, secret: str = SECRET, ts: float | None = None, **extra: str
) -> dict[str, str]:
    """Headers as Slack sends them, signed independently of the code under test."""
    stamp = str(int(time.time() if ts is None else ts))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
        **extra,
    }


def command(text: str = "Node or Python for a chat app?", **fields: str) -> str:
    url = "https://hooks.slack.com/commands/T1/1/x"
    fixed = {"command": "/advisor", "user_id": "U1", "channel_id": "C1", "response_url": url}
    return urlencode({**fixed, "text": text, **fields})


def post_command(client: TestClient, body: str, headers: dict[str, str] | None = None) -> Any:
    return client.post("/slack/commands", content=body, headers=headers or signed(body))


# --- signature checks -------------------------------------------------------------------------


def test_valid_signature_answers_inline(tmp_path: Path) -> None:
    advisor = fake_advisor()
    reply = post_command(make_client(tmp_path, advisor), command())
    assert reply.status_code == 200
    assert reply.json()["response_type"] == "ephemeral"
    assert [c.question for c in advisor.calls] == ["Node or Python for a chat app?"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda b: signed(b, secret="wrong-secret"), id="wrong-secret"),
        pytest.param(lambda b: signed(b + "&text=tampered"), id="tampered-body"),
        pytest.param(lambda b: signed(b, ts=time.time() - 301), id="stale"),
        pytest.param(lambda b: signed(b, ts=time.time() + 301), id="future"),
        pytest.param(lambda b: {"Content-Type": "application/x-www-form-urlencoded"}, id="none"),
        pytest.param(lambda b: {k: v for k, v in signed(b).items() if "Sig" not in k}, id="no-sig"),
        pytest.param(lambda b: {k: v for k, v in signed(b).items() if "Time" not in k}, id="no-ts"),
        pytest.param(lambda b: {**signed(b), "X-Slack-Request-Timestamp": "soon"}, id="bad-ts"),
        pytest.param(lambda b: {**signed(b), "X-Slack-Signature": "v0=00"}, id="short-sig"),
    ],
)
@pytest.mark.parametrize("path", ["/slack/commands", "/slack/events"])
def test_bad_signatures_are_refused_before_anything_else(
    tmp_path: Path, server: LocalServer, headers: Any, path: str
) -> None:
    advisor = fake_advisor()
    body = command() if path == "/slack/commands" else json.dumps(mention())
    client = events_client(tmp_path, advisor, server)
    reply = client.post(path, content=body, headers=headers(body))
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"
    assert advisor.calls == [] and server.requests == []


@pytest.mark.parametrize("same", [True, False], ids=["same-value", "other-value"])
@pytest.mark.parametrize("name", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_a_header_given_twice_is_refused(tmp_path: Path, name: str, same: bool) -> None:
    advisor = fake_advisor()
    body = command()
    good = signed(body)
    other = signed(body, ts=time.time() - 1)[name]  # valid on its own, too
    headers = [*good.items(), (name, good[name] if same else other)]
    reply = make_client(tmp_path, advisor).post("/slack/commands", content=body, headers=headers)
    assert reply.status_code == 401
    assert advisor.calls == []


def test_a_replayed_request_is_answered_once(tmp_path: Path) -> None:
    advisor = fake_advisor()
    client = make_client(tmp_path, advisor)
    body = command()
    headers = signed(body)
    assert post_command(client, body, headers).status_code == 200
    replay = post_command(client, body, headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]["message"]
    assert len(advisor.calls) == 1


@pytest.mark.parametrize("secret", [None, "", "   "], ids=["unset", "empty", "blank"])
@pytest.mark.parametrize("path", ["/slack/commands", "/slack/events"])
def test_no_secret_is_503_and_nothing_processed(
    tmp_path: Path, path: str, secret: str | None
) -> None:
    advisor = fake_advisor()
    client = make_client(tmp_path, advisor, slack_signing_secret=secret)
    body = command()
    reply = client.post(path, content=body, headers=signed(body))
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "not_configured"
    assert "not configured" in reply.json()["error"]["message"]
    assert advisor.calls == []


def test_slack_public_test_vector(tmp_path: Path) -> None:
    # The vector of slack_sdk's own SignatureVerifier tests, checked by slack_sdk itself first.
    assert SignatureVerifier(VECTOR_SECRET, FixedClock(VECTOR_TS)).is_valid(
        VECTOR_BODY, str(VECTOR_TS), VECTOR_SIGNATURE
    )
    assert not SignatureVerifier(VECTOR_SECRET).is_valid(
        VECTOR_BODY, str(VECTOR_TS), VECTOR_SIGNATURE
    )
    advisor = fake_advisor()
    client = make_client(tmp_path, advisor, slack_signing_secret=VECTOR_SECRET)
    headers = {
        "X-Slack-Request-Timestamp": str(VECTOR_TS),
        "X-Slack-Signature": VECTOR_SIGNATURE,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert signed(VECTOR_BODY, VECTOR_SECRET, VECTOR_TS)["X-Slack-Signature"] == VECTOR_SIGNATURE

    stale = post_command(client, VECTOR_BODY, headers)  # the real clock: years too late
    assert stale.status_code == 401
    assert "over 5 minutes old" in stale.json()["error"]["message"]

    client.app.state.slack_clock = FixedClock(VECTOR_TS)  # type: ignore[attr-defined]
    reply = post_command(client, VECTOR_BODY, headers)
    assert reply.status_code == 200
    assert reply.json()["response_type"] == "ephemeral"
    assert "/webhook-collect" in reply.json()["text"]  # empty text: the usage, for this command
    assert advisor.calls == []

    replay = post_command(client, VECTOR_BODY, headers)  # the same signature again
    assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]


@pytest.mark.parametrize("skew", [-301, 301])
def test_pinned_clock_refuses_the_vector_just_out_of_window(tmp_path: Path, skew: int) -> None:
    client = make_client(tmp_path, fake_advisor(), slack_signing_secret=VECTOR_SECRET)
    client.app.state.slack_clock = FixedClock(VECTOR_TS + skew)  # type: ignore[attr-defined]
    headers = {"X-Slack-Request-Timestamp": str(VECTOR_TS), "X-Slack-Signature": VECTOR_SIGNATURE}
    assert post_command(client, VECTOR_BODY, headers).status_code == 401


def test_a_non_ascii_signature_is_401_not_a_crash(tmp_path: Path) -> None:
    advisor = fake_advisor()
    body = command()
    headers: dict[str, Any] = signed(body)
    headers["X-Slack-Signature"] = "v0=caf\xe9".encode("latin-1")  # hmac refuses non-ASCII text
    reply = make_client(tmp_path, advisor).post("/slack/commands", content=body, headers=headers)
    assert reply.status_code == 401 and advisor.calls == []


def test_a_replayed_event_is_processed_once(tmp_path: Path, server: LocalServer) -> None:
    advisor = fake_advisor()
    client = events_client(tmp_path, advisor, server)
    body = json.dumps(mention())
    headers = signed(body) | {"Content-Type": "application/json"}
    assert client.post("/slack/events", content=body, headers=headers).status_code == 200
    replay = client.post("/slack/events", content=body, headers=headers)
    assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]
    assert len(advisor.calls) == 1 and len(server.calls("chat.postMessage")) == 1


@pytest.mark.parametrize(
    "body",
    ["[" * 20_000 + "]" * 20_000, "{not json", "[1, 2]", '"text"'],
    ids=["nested", "invalid", "array", "string"],
)
def test_a_signed_event_that_is_not_a_json_object_is_400(tmp_path: Path, body: str) -> None:
    advisor = fake_advisor()
    headers = signed(body) | {"Content-Type": "application/json"}
    reply = make_client(tmp_path, advisor).post("/slack/events", content=body, headers=headers)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_request"
    assert advisor.calls == []


# --- slash command replies --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP"])
def test_help_and_empty_show_usage(tmp_path: Path, text: str) -> None:
    advisor = fake_advisor()
    reply = post_command(make_client(tmp_path, advisor, slack_in_channel=True), command(text))
    data = reply.json()
    assert reply.status_code == 200
    assert data["response_type"] == "ephemeral"
    assert "`/advisor " in data["text"]
    assert sum(1 for line in data["text"].splitlines() if line.startswith("• ")) >= 3
    assert advisor.calls == []


def test_inline_block_kit_shape(tmp_path: Path) -> None:
    data = post_command(make_client(tmp_path, fake_advisor()), command()).json()
    assert set(data) == {"response_type", "text", "blocks"}
    section, context = data["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*Verdict: Node.js*" in section["text"]["text"]
    assert "*Node.js* — for a real-time chat app" in section["text"]["text"]  # **bold** → *bold*
    assert "**" not in section["text"]["text"]
    assert "\n• Socket.IO is the mature choice [2]" in section["text"]["text"]
    assert context["type"] == "context" and context["elements"][0]["type"] == "mrkdwn"
    assert context["elements"][0]["text"].splitlines() == [
        "[1] Decision matrix — “Real-time chat: Node.js.”",
        "[2] Frameworks — “Socket.IO remains the mature choice.”",
    ]
    assert data["text"].startswith("Node.js: Node.js — for a real-time chat app")


def test_user_and_answer_text_are_escaped(tmp_path: Path) -> None:
    advisor = fake_advisor(answer=f"**Node.js** {HOSTILE}")
    # Slack sends a typed "<" as "&lt;"; a real mention arrives as <@U…> and is dropped.
    wire = "Is &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;@U123&gt; <@U999|bob> fast?"
    reply = post_command(make_client(tmp_path, advisor), command(wire))
    assert advisor.calls[0].question == "Is <script>alert(1)</script> & <@U123>  fast?"
    raw = reply.text
    for unsafe in ("<script>", "<@U123>", "<!channel>", "<@U999"):
        assert unsafe not in raw
    section = reply.json()["blocks"][0]["text"]["text"]
    assert "*Q:* Is &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;@U123&gt; fast?" in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;@U123&gt; &lt;!channel&gt;" in section
    assert "&lt;@U123&gt;" in reply.json()["text"]


def test_answer_blocks_escape_sources_and_fit_block_kit_limits() -> None:
    answer = fake_advisor(answer="x " * 4000).ask(AskRequest(question="q"))
    answer.citations[0].section = "<b>&"
    text, blocks = slack.answer_blocks(answer)
    assert len(blocks[0]["text"]["text"]) <= 3000 and blocks[0]["text"]["text"].endswith("…")
    assert blocks[1]["elements"][0]["text"].startswith("[1] &lt;b&gt;&amp; — ")
    assert len(text) <= 3000


def test_to_mrkdwn_converts_common_markdown() -> None:
    markdown = "## Verdict\n**Node.js** wins\n- one\n[docs](https://x.example/?a=1&b=2)"
    assert slack.to_mrkdwn(markdown) == (
        "*Verdict*\n*Node.js* wins\n• one\n<https://x.example/?a=1&amp;b=2|docs>"
    )


def test_in_channel_setting(tmp_path: Path) -> None:
    reply = post_command(make_client(tmp_path, fake_advisor(), slack_in_channel=True), command())
    assert reply.json()["response_type"] == "in_channel"


@pytest.mark.parametrize("question", ["x" * 2001, "bad\x01char"])
def test_a_refused_question_says_why(tmp_path: Path, question: str) -> None:
    advisor = fake_advisor()
    reply = post_command(make_client(tmp_path, advisor, slack_in_channel=True), command(question))
    assert reply.status_code == 200
    assert reply.json()["response_type"] == "ephemeral"
    assert reply.json()["text"].startswith("I can't answer that: The question")
    assert advisor.calls == []


def test_an_advisor_refusal_says_why(tmp_path: Path) -> None:
    advisor = fake_advisor(error=BadRequest("history: too long <b>"))
    reply = post_command(make_client(tmp_path, advisor), command())
    assert reply.json() == {
        "response_type": "ephemeral",
        "text": "I can't answer that: history: too long &lt;b&gt;",
    }


def test_with_an_llm_the_answer_goes_to_response_url(tmp_path: Path, server: LocalServer) -> None:
    server.default = "ok"  # what Slack's response_url answers
    advisor = fake_advisor()
    client = make_client(tmp_path, advisor, llm="openai:x", slack_in_channel=True)
    body = command(response_url=f"{server.url}/commands/T1/123/secret")
    reply = post_command(client, body)
    assert reply.status_code == 200
    assert reply.json() == {"response_type": "ephemeral", "text": "Thinking…"}
    (posted,) = server.requests
    assert posted["path"] == "/commands/T1/123/secret" and posted["verb"] == "POST"
    assert posted["body"]["response_type"] == "in_channel"
    assert posted["body"]["blocks"][0]["type"] == "section"
    assert "*Verdict: Node.js*" in posted["body"]["blocks"][0]["text"]["text"]
    assert posted["body"]["text"].startswith("Node.js: ")
    assert len(advisor.calls) == 1


# --- Events API -------------------------------------------------------------------------------


def mention(text: str = "<@UBOT> Node or Python for a chat app?", **event: Any) -> dict[str, Any]:
    body = {
        "type": "app_mention",
        "user": "U1",
        "text": text,
        "channel": "C1",
        "ts": "1700000050.000200",
        **event,
    }
    return {"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": body}


def post_event(
    client: TestClient, payload: dict[str, Any], ts: float | None = None, **headers: str
) -> Any:
    body = json.dumps(payload)
    sent = signed(body, ts=ts, **headers) | {"Content-Type": "application/json"}
    return client.post("/slack/events", content=body, headers=sent)


def events_client(tmp_path: Path, advisor: FakeAdvisor, server: LocalServer) -> TestClient:
    return make_client(
        tmp_path, advisor, slack_bot_token=BOT_TOKEN, slack_api_url=f"{server.url}/api/"
    )


def test_url_verification(tmp_path: Path) -> None:
    payload = {"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2"}
    reply = post_event(make_client(tmp_path, fake_advisor()), payload)
    assert reply.status_code == 200
    assert reply.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2"}


def test_url_verification_needs_a_signature(tmp_path: Path) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c"})
    reply = make_client(tmp_path, fake_advisor()).post("/slack/events", content=body)
    assert reply.status_code == 401


def test_mention_answered_once_in_its_thread_despite_retries(
    tmp_path: Path, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    advisor = fake_advisor()
    client = events_client(tmp_path, advisor, server)
    now = time.time()
    assert post_event(client, mention(), ts=now).status_code == 200
    for retry in (1, 2, 3):  # Slack re-signs each retry
        reply = post_event(client, mention(), ts=now + retry, **{"X-Slack-Retry-Num": str(retry)})
        assert reply.status_code == 200
    (posted,) = server.calls("chat.postMessage")
    assert posted["auth"] == f"Bearer {BOT_TOKEN}"
    assert posted["body"]["channel"] == "C1"
    assert posted["body"]["thread_ts"] == "1700000050.000200"
    assert posted["body"]["blocks"][0]["type"] == "section"
    assert posted["body"]["text"].startswith("Node.js: ")
    assert server.calls("conversations.replies") == []  # not in a thread: no history to read
    assert [c.question for c in advisor.calls] == ["Node or Python for a chat app?"]
    assert advisor.calls[0].history == []
    assert SECRET not in caplog.text and BOT_TOKEN not in caplog.text


def test_mention_in_a_thread_uses_the_thread_as_history(
    tmp_path: Path, server: LocalServer
) -> None:
    server.replies["conversations.replies"] = {
        "ok": True,
        "has_more": False,
        "messages": [
            {
                "type": "message",
                "user": "U1",
                "ts": "1700000000.000100",
                "text": "<@UBOT> Node or Python for a chat app?",
            },
            {
                "type": "message",
                "bot_id": "B1",
                "user": "UBOT",
                "ts": "1700000010.000100",
                "text": "Node.js: Node.js — the decision matrix picks Node.js [1].",
            },
            {"type": "message", "user": "U2", "ts": "1700000020.000100", "text": "agreed &amp; ok"},
            {
                "type": "message",
                "user": "U1",
                "ts": "1700000050.000200",
                "text": "<@UBOT> and what about machine learning?",
            },
            {"type": "message", "user": "U3", "ts": "1700000060.000100", "text": "later"},
        ],
    }
    advisor = fake_advisor()
    event = mention("<@UBOT> and what about machine learning?", thread_ts="1700000000.000100")
    assert post_event(events_client(tmp_path, advisor, server), event).status_code == 200
    (read,) = server.calls("conversations.replies")
    params = read["query"] | read["body"]  # WebClient may send them either way
    assert params["channel"] == "C1" and params["ts"] == "1700000000.000100"
    (asked,) = advisor.calls
    assert asked.question == "and what about machine learning?"
    assert asked.history == [
        Turn(role="user", content="Node or Python for a chat app?"),
        Turn(role="assistant", content="Node.js: Node.js — the decision matrix picks Node.js [1]."),
        Turn(role="user", content="agreed & ok"),
    ]
    (posted,) = server.calls("chat.postMessage")
    assert posted["body"]["thread_ts"] == "1700000000.000100"


def test_thread_messages_with_control_characters_are_cleaned(
    tmp_path: Path, server: LocalServer
) -> None:
    server.replies["conversations.replies"] = {
        "ok": True,
        "messages": [
            {"user": "U1", "ts": "1700000000.000100", "text": "Node\x00 or \x1b[1mPython\x07?"},
            {"user": "U2", "ts": "1700000001.000100", "text": "x" * 30_000},
            {"user": "U3", "ts": "not a timestamp", "text": "skipped"},
            "not a message",
        ],
    }
    advisor = fake_advisor()
    event = mention("<@UBOT> and for ETL?", thread_ts=1700000000.0001)  # a number, not text
    assert post_event(events_client(tmp_path, advisor, server), event).status_code == 200
    (asked,) = advisor.calls
    assert [t.content for t in asked.history] == ["Node or [1mPython?", "x" * 20_000]
    (posted,) = server.calls("chat.postMessage")
    assert posted["body"]["thread_ts"] == "1700000000.0001"


@pytest.mark.parametrize(
    "event", [{"bot_id": "B1"}, {"subtype": "bot_message"}], ids=["bot_id", "bot_message"]
)
def test_bot_messages_are_ignored(tmp_path: Path, server: LocalServer, event: Any) -> None:
    advisor = fake_advisor()
    reply = post_event(events_client(tmp_path, advisor, server), mention(**event))
    assert reply.status_code == 200
    assert advisor.calls == [] and server.requests == []


def test_help_mention_posts_usage(tmp_path: Path, server: LocalServer) -> None:
    advisor = fake_advisor()
    post_event(events_client(tmp_path, advisor, server), mention("<@UBOT> help"))
    (posted,) = server.calls("chat.postMessage")
    assert "Stack Advisor" in posted["body"]["text"] and "blocks" not in posted["body"]
    assert advisor.calls == []


def test_without_a_bot_token_mentions_are_acknowledged_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    advisor = fake_advisor()
    reply = post_event(make_client(tmp_path, advisor), mention())
    assert reply.status_code == 200
    assert advisor.calls == []
    assert "ADVISOR_SLACK_BOT_TOKEN" in caplog.text
    assert SECRET not in caplog.text


def test_other_events_are_acknowledged(tmp_path: Path, server: LocalServer) -> None:
    advisor = fake_advisor()
    payload = {"type": "event_callback", "event_id": "Ev9", "event": {"type": "reaction_added"}}
    assert post_event(events_client(tmp_path, advisor, server), payload).status_code == 200
    assert advisor.calls == [] and server.requests == []
