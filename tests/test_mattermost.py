"""Mattermost: token checks, form and JSON bodies, outgoing webhooks and Markdown escaping."""

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from support import DECISION_CITATION, FakeAdvisor

from app import mattermost
from app.config import Settings
from app.server import create_app

TOKEN = "mm-token-0123456789abcdef"
FORM = "application/x-www-form-urlencoded"
ANSWER = (
    "**Node.js** — for a real-time chat app, the article's decision matrix picks Node.js: "
    "its event loop holds many open sockets cheaply [1]."
)


def fake_advisor(answer: str = ANSWER) -> FakeAdvisor:
    return FakeAdvisor(answer, strength="slight", citations=[DECISION_CITATION])


def make_client(tmp_path: Path, advisor: FakeAdvisor, token: str | None = TOKEN) -> TestClient:
    values: dict[str, Any] = {"data_dir": tmp_path, "mattermost_token": token}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return TestClient(create_app(settings=settings, advisor=advisor, ui=False))  # type: ignore[arg-type]


def form(text: str = "Node or Python for a chat app?", **fields: str) -> dict[str, str]:
    return {
        "token": TOKEN,
        "command": "/advisor",
        "text": text,
        "user_name": "alice",
        "channel_name": "town-square",
        **fields,
    }


def post_form(client: TestClient, fields: dict[str, str], **headers: str) -> Any:
    body = urlencode(fields)
    return client.post(
        "/mattermost/commands", content=body, headers={"Content-Type": FORM, **headers}
    )


def test_right_token_in_the_form(tmp_path: Path) -> None:
    advisor = fake_advisor()
    reply = post_form(make_client(tmp_path, advisor), form())
    assert reply.status_code == 200
    data = reply.json()
    assert data["response_type"] == "ephemeral"
    assert data["text"].splitlines()[:4] == [
        "**Question:** Node or Python for a chat app\\?",
        "**Verdict: Node.js (slight edge)**",
        "",
        ANSWER,
    ]
    assert "- \\[1\\] Decision matrix — “Real\\-time chat\\: Node\\.js\\.”" in data["text"]
    assert [c.question for c in advisor.calls] == ["Node or Python for a chat app?"]


def test_right_token_in_the_header_with_a_json_body(tmp_path: Path) -> None:
    advisor = fake_advisor()
    body = json.dumps({"command": "/advisor", "text": "Node or Python for a chat app?"})
    reply = make_client(tmp_path, advisor).post(
        "/mattermost/commands",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Token {TOKEN}"},
    )
    assert reply.status_code == 200
    assert len(advisor.calls) == 1


def test_right_token_in_a_json_body(tmp_path: Path) -> None:
    advisor = fake_advisor()
    client = make_client(tmp_path, advisor)
    reply = client.post("/mattermost/commands", json=form())
    assert reply.status_code == 200
    assert len(advisor.calls) == 1


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        pytest.param(form(token="wrong"), {}, id="wrong-form-token"),
        pytest.param({k: v for k, v in form().items() if k != "token"}, {}, id="missing"),
        pytest.param(form(token=""), {}, id="empty"),
        pytest.param(form(), {"Authorization": "Token wrong"}, id="wrong-header-wins"),
        pytest.param(form(token="wrong"), {"Authorization": f"Bearer {TOKEN}"}, id="bearer"),
        pytest.param(form(token="tökén"), {}, id="non-ascii"),
    ],
)
def test_wrong_or_missing_token_is_401(
    tmp_path: Path, fields: dict[str, str], headers: dict[str, str]
) -> None:
    advisor = fake_advisor()
    reply = post_form(make_client(tmp_path, advisor), fields, **headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthorized"
    assert advisor.calls == []


def test_unreadable_json_is_401_without_a_token(tmp_path: Path) -> None:
    client = make_client(tmp_path, fake_advisor())
    headers = {"Content-Type": "application/json"}
    reply = client.post("/mattermost/commands", content="{not json", headers=headers)
    assert reply.status_code == 401


def test_unreadable_json_with_a_good_token_is_400(tmp_path: Path) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Token {TOKEN}"}
    client = make_client(tmp_path, fake_advisor())
    reply = client.post("/mattermost/commands", content="[1]", headers=headers)
    assert reply.status_code == 400


def test_unset_token_is_503_and_nothing_processed(tmp_path: Path) -> None:
    advisor = fake_advisor()
    reply = post_form(make_client(tmp_path, advisor, token=None), form())
    assert reply.status_code == 503
    assert "not configured" in reply.json()["error"]["message"]
    assert advisor.calls == []


@pytest.mark.parametrize("text", ["", "  ", "help", "Help"])
def test_help_and_empty_show_usage(tmp_path: Path, text: str) -> None:
    advisor = fake_advisor()
    data = post_form(make_client(tmp_path, advisor), form(text)).json()
    assert data["response_type"] == "ephemeral"
    assert "`/advisor your question`" in data["text"]
    assert sum(1 for line in data["text"].splitlines() if line.startswith("- `/advisor ")) >= 3
    assert advisor.calls == []


def test_outgoing_webhook_strips_the_trigger_word(tmp_path: Path) -> None:
    advisor = fake_advisor()
    fields = form("advisor: Node or Python for a chat app?", trigger_word="advisor:")
    del fields["command"]
    data = post_form(make_client(tmp_path, advisor), fields).json()
    assert [c.question for c in advisor.calls] == ["Node or Python for a chat app?"]
    assert data["response_type"] == "in_channel"


def test_user_text_is_escaped(tmp_path: Path) -> None:
    hostile = (
        "<script>alert(1)</script> & [click](http://evil.example) "
        "![x](http://evil.example/x.png) www.evil.example @channel **bold** <@U123>"
    )
    advisor = fake_advisor(answer=f"**Node.js** {hostile}")
    text = post_form(make_client(tmp_path, advisor), form(hostile)).json()["text"]
    question, answer = text.splitlines()[0], text.splitlines()[3]
    assert question == (
        "**Question:** &lt;script&gt;alert\\(1\\)&lt;\\/script&gt; &amp; "
        "\\[click\\]\\(http\\:\\/\\/evil\\.example\\) "
        "\\!\\[x\\]\\(http\\:\\/\\/evil\\.example\\/x\\.png\\) www\\.evil\\.example "
        "@\u200bchannel \\*\\*bold\\*\\* &lt;@\u200bU123&gt;"
    )
    # The answer stays Markdown, but without raw HTML, images or mentions.
    assert answer.startswith("**Node.js** &lt;script&gt;alert(1)&lt;/script&gt; &amp; ")
    assert "!\\[x](http://evil.example/x.png)" in answer
    assert "@\u200bchannel" in answer and "&lt;@\u200bU123&gt;" in answer
    for unsafe in ("<script>", "<@U123>", "![x]", " @channel"):
        assert unsafe not in text


def test_escape_markdown_keeps_words_and_breaks_mentions() -> None:
    assert mattermost.escape_markdown("Node.js\n\nor   Python?") == "Node\\.js or Python\\?"
    assert mattermost.escape_markdown("ask @here") == "ask @\u200bhere"


@pytest.mark.parametrize(
    "body", ["[" * 20_000 + "]" * 20_000, "[1, 2]", '"text"', "{not json"], ids=len
)
def test_unreadable_json_with_the_header_token_is_400(tmp_path: Path, body: str) -> None:
    advisor = fake_advisor()
    headers = {"Content-Type": "application/json", "Authorization": f"Token {TOKEN}"}
    reply = make_client(tmp_path, advisor).post(
        "/mattermost/commands", content=body, headers=headers
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_request"
    assert advisor.calls == []


@pytest.mark.parametrize("text", [None, 42, ["a", "b"], {"q": "x"}, True])
def test_json_fields_of_any_type_are_read_as_text(tmp_path: Path, text: object) -> None:
    advisor = fake_advisor()
    payload = {"token": TOKEN, "command": ["/odd"], "text": text, "trigger_word": 7}
    reply = make_client(tmp_path, advisor).post("/mattermost/commands", json=payload)
    assert reply.status_code == 200
    assert reply.json()["response_type"] in ("ephemeral", "in_channel") and reply.json()["text"]


@pytest.mark.parametrize("text", ["a\x00b", "x" * 2001, "\u202e\u2066"])
def test_a_refused_question_is_explained_not_answered(tmp_path: Path, text: str) -> None:
    advisor = fake_advisor()
    data = post_form(make_client(tmp_path, advisor), form(text)).json()
    assert data["response_type"] == "ephemeral"
    assert data["text"].startswith("I can\\'t answer that\\: The question")
    assert advisor.calls == []


def test_direction_overrides_never_reach_the_channel(tmp_path: Path) -> None:
    advisor = fake_advisor()
    data = post_form(make_client(tmp_path, advisor), form("Node or \u202enohtyP\u202c?")).json()
    assert [c.question for c in advisor.calls] == ["Node or nohtyP?"]
    assert "\u202e" not in data["text"] and "\u202c" not in data["text"]
