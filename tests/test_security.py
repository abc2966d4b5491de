"""Security defaults: loopback bind, no share, no CORS unless set, admin token, secrets unlogged."""

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gradio as gr
import httpx
import pytest
from fastapi.testclient import TestClient
from serving import advisor_server, free_port, served_dirs
from support import FakeAdvisor

from app.answer import AskRequest
from app.config import Settings, is_loopback
from app.server import create_app
from app.ui import Session, record_vote

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {
    "SLACK_SIGNING_SECRET": "slack-signing-5ecret-9f8e7d",
    "SLACK_BOT_TOKEN": "xoxb-bot-5ecret-1a2b3c",
    "ADVISOR_MATTERMOST_TOKEN": "mm-5ecret-token-4d5e6f",
    "ADVISOR_ADMIN_TOKEN": "admin-5ecret-7a8b9c",
    "ADVISOR_LLM_API_KEY": "sk-llm-5ecret-0d1e2f",
}
QUESTION = {"question": "Node or Python for a real-time chat app?"}


def app_client(tmp_path: Path, **changes: Any) -> TestClient:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", **changes)  # type: ignore[call-arg]
    return TestClient(create_app(settings, advisor=FakeAdvisor("Node.js [1]."), ui=False))


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_bind_loopback_with_no_cors_and_no_admin_token() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.host == "127.0.0.1" and is_loopback(settings.host)
    assert settings.cors_origins == [] and settings.trusted_proxies == []
    assert settings.admin_token is None


def test_gradio_is_mounted_never_launched_or_shared() -> None:
    # A Gradio share link is only made by launch(share=True); the app mounts the page instead.
    source = "\n".join(p.read_text() for p in (ROOT / "app").glob("*.py"))
    assert "mount_gradio_app" in source
    assert not re.search(r"\.launch\(|share\s*=\s*True", source)


def test_no_cors_headers_unless_origins_are_configured(tmp_path: Path) -> None:
    preflight = {
        "Origin": "https://elsewhere.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    closed = app_client(tmp_path)
    assert (
        "access-control-allow-origin" not in closed.options("/api/ask", headers=preflight).headers
    )
    answered = closed.post("/api/ask", json=QUESTION, headers={"Origin": preflight["Origin"]})
    assert answered.status_code == 200
    assert "access-control-allow-origin" not in answered.headers

    opened = app_client(tmp_path, cors_origins=["https://app.example"])
    allowed = opened.options("/api/ask", headers=preflight | {"Origin": "https://app.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = opened.post("/api/ask", json=QUESTION, headers={"Origin": preflight["Origin"]})
    assert "access-control-allow-origin" not in other.headers


# --- the admin token --------------------------------------------------------------------------

VOTE = {"question": "q", "answer": "a", "verdict": None, "kb_version": "k", "vote": "up"}


def test_feedback_is_open_on_loopback_without_a_token(tmp_path: Path) -> None:
    client = app_client(tmp_path)
    assert client.post("/api/feedback", json=VOTE).status_code == 201
    assert client.get("/api/feedback").json()["total"] == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "advisor.example"])
def test_feedback_is_closed_beyond_loopback_until_a_token_is_set(tmp_path: Path, host: str) -> None:
    client = app_client(tmp_path, host=host)
    for response in (client.get("/api/feedback"), client.post("/api/feedback", json=VOTE)):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_configured"
        assert "ADVISOR_ADMIN_TOKEN" in response.json()["error"]["message"]
    assert client.post("/api/ask", json=QUESTION).status_code == 200  # answering is unaffected


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_configured_token_is_required_everywhere(tmp_path: Path, host: str) -> None:
    client = app_client(tmp_path, host=host, admin_token="s3cret-admin")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-admin"}):
        response = client.get("/api/feedback", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
    good = {"Authorization": "Bearer s3cret-admin"}
    assert client.post("/api/feedback", json=VOTE, headers=good).status_code == 201
    assert client.get("/api/feedback", headers=good).json()["total"] == 1


def test_chat_page_votes_need_no_token_beyond_loopback(tmp_path: Path) -> None:
    client = app_client(tmp_path, host="0.0.0.0")
    app = client.app
    answer = FakeAdvisor("Node.js [1].").ask(AskRequest(**QUESTION))
    session = Session(answers={1: answer})
    data = gr.LikeData(None, {"index": 1, "value": ["..."], "liked": True})
    assert record_vote(app, session, data) is not None  # type: ignore[arg-type]
    assert app.state.feedback.count() == 1  # type: ignore[attr-defined]


def test_openapi_declares_the_bearer_token(tmp_path: Path) -> None:
    spec = app_client(tmp_path).get("/openapi.json").json()
    assert spec["paths"]["/api/feedback"]["get"]["security"] == [{"HTTPBearer": []}]


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_come_from_env_or_dotenv_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(f"ADVISOR_ADMIN_TOKEN={SECRETS['ADVISOR_ADMIN_TOKEN']}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRETS["SLACK_SIGNING_SECRET"])
    settings = Settings()
    assert settings.admin_token is not None and settings.slack_signing_secret is not None
    assert settings.admin_token.get_secret_value() == SECRETS["ADVISOR_ADMIN_TOKEN"]
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    for value in SECRETS.values():
        assert value not in shown


@pytest.mark.slow
def test_secrets_never_reach_the_logs_of_a_debug_run(
    tmp_path: Path, kb_settings: Settings, model_cache: Path
) -> None:
    dead = free_port()
    env = served_dirs(tmp_path, kb_settings, model_cache) | SECRETS
    env |= {
        "ADVISOR_LOG_LEVEL": "debug",
        "ADVISOR_LLM": "openai:test-model",
        "ADVISOR_LLM_BASE_URL": f"http://127.0.0.1:{dead}/v1",  # nothing listens: fallback
        "ADVISOR_LLM_TIMEOUT_S": "3",
    }
    with advisor_server(env, tmp_path / "server.log") as served:
        responses = _exercise(served.url, dead)
        # Slack's deferred answer runs after the reply, then fails to post and logs why.
        deadline = time.monotonic() + 120
        while " app.slack: " not in served.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        output = served.output()

    by_route = {name: r for name, r in responses}
    assert by_route["ask"].status_code == 200
    assert "fallback" in by_route["ask"].json()["engine"]  # the keyed LLM was really tried
    assert by_route["slack bad signature"].status_code == 401
    assert by_route["slack events bad signature"].status_code == 401
    assert by_route["slack signed"].status_code == 200
    assert by_route["mattermost wrong token"].status_code == 401
    assert by_route["mattermost"].status_code == 200
    assert by_route["feedback wrong token"].status_code == 401
    assert by_route["feedback"].status_code == 200
    # The log was really capturing at DEBUG: the LLM client and the app's own warnings.
    assert "DEBUG" in output and "openai" in output
    assert " app.slack: " in output  # the app's own warnings are in the log too
    for name, value in SECRETS.items():
        assert value not in output, f"{name} appears in the server log"
        for route, response in responses:
            assert value not in response.text, f"{name} appears in the {route} response"


def _exercise(url: str, dead: int) -> list[tuple[str, httpx.Response]]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    stamp = str(int(time.time()))
    command = urlencode(
        {
            "command": "/advisor",
            "text": "Node or Python for ETL?",
            "response_url": f"http://127.0.0.1:{dead}/hook",
        }
    )
    signed = hmac.new(
        SECRETS["SLACK_SIGNING_SECRET"].encode(), f"v0:{stamp}:{command}".encode(), hashlib.sha256
    ).hexdigest()
    slack = form | {"X-Slack-Request-Timestamp": stamp}
    mattermost = urlencode({"token": "wrong", "command": "/advisor", "text": "ETL?"})
    admin = {"Authorization": f"Bearer {SECRETS['ADVISOR_ADMIN_TOKEN']}"}
    history = [{"role": "user", "content": "Node or Python for a chat app?"}]
    with httpx.Client(base_url=url, timeout=60) as client:
        return [
            ("ask", client.post("/api/ask", json=QUESTION)),
            (
                "ask follow-up",
                client.post("/api/ask", json={"question": "and ETL?", "history": history}),
            ),
            (
                "slack bad signature",
                client.post(
                    "/slack/commands",
                    content=command,
                    headers=slack | {"X-Slack-Signature": "v0=00"},
                ),
            ),
            (
                "slack events bad signature",
                client.post(
                    "/slack/events",
                    json={"type": "event_callback"},
                    headers={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=bad"},
                ),
            ),
            (
                "slack signed",
                client.post(
                    "/slack/commands",
                    content=command,
                    headers=slack | {"X-Slack-Signature": f"v0={signed}"},
                ),
            ),
            (
                "mattermost wrong token",
                client.post("/mattermost/commands", content=mattermost, headers=form),
            ),
            (
                "mattermost",
                client.post(
                    "/mattermost/commands",
                    content=mattermost.replace(
                        "token=wrong", f"token={SECRETS['ADVISOR_MATTERMOST_TOKEN']}"
                    ),
                    headers=form,
                ),
            ),
            (
                "feedback wrong token",
                client.get("/api/feedback", headers={"Authorization": "Bearer nope"}),
            ),
            ("feedback", client.get("/api/feedback", headers=admin)),
            ("bad input", client.post("/api/ask", json={"question": ""})),
        ]
