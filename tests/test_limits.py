"""Load limits: per-client token buckets, the bounded gate, the per-request time limit."""

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from serving import fake_llm
from support import FakeAdvisor

from app.answer import Answer, AskRequest
from app.chain import Advisor
from app.config import Settings
from app.errors import ConfigError, Overloaded
from app.limits import Gate, TokenBuckets, limited_group
from app.llm import LLMEngine, make_chat_model
from app.server import create_app

QUESTION = {"question": "Node or Python for a real-time chat app?"}
CLIENT = ("127.0.0.1", 50000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BlockingAdvisor(FakeAdvisor):
    """Answers only once `release` is set; `finished` counts answers that completed."""

    def __init__(self) -> None:
        super().__init__("Node.js, for its event loop [1].")
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.finished = threading.Semaphore(0)

    def ask(self, request: AskRequest) -> Answer:
        self.entered.release()
        self.release.wait(60)
        try:
            return super().ask(request)
        finally:
            self.finished.release()


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **changes)  # type: ignore[call-arg]


@contextmanager
def serving(settings: Settings, advisor: Any) -> Iterator[TestClient]:
    """One event loop for the whole block, as under uvicorn."""
    with TestClient(create_app(settings, advisor=advisor, ui=False), client=CLIENT) as client:
        yield client


def assert_refusal(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    if status in (429, 503):
        assert int(response.headers["retry-after"]) >= 1


# --- token buckets ----------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses_until_refilled() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)  # one token a second
    assert buckets.take("b") == 0.0  # clients are independent
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 3600
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refills up to the burst, no more


def test_buckets_forget_the_least_recently_seen_client_first() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1, clock=Clock(), max_clients=2)
    buckets.take("old")
    buckets.take("new")
    buckets.take("old")  # "old" is now the most recent; "new" goes first
    buckets.take("third")
    assert len(buckets) == 2
    assert buckets.take("new") == 0.0  # forgotten, so a fresh bucket
    assert buckets.take("third") > 0  # remembered: its one token is spent


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/api/ask", "api"),
        ("/slack/commands", "chat"),
        ("/slack/events", "chat"),
        ("/mattermost/commands", "chat"),
        ("/healthz", None),
        ("/readyz", None),
        ("/api/feedback", None),
        ("/", None),
        ("/gradio_api/queue/join", None),
        ("/assets/index.js", None),
    ],
)
def test_only_answering_routes_are_limited(path: str, group: str | None) -> None:
    assert limited_group(path) == group


# --- the gate ---------------------------------------------------------------------------------


def test_gate_queues_then_refuses_and_hands_slots_on() -> None:
    async def scenario() -> None:
        gate = Gate(slots=1, queue=1)
        await gate.enter(1)
        waiter = asyncio.create_task(gate.enter(30))
        while gate.waiting == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await gate.enter(30)  # the queue is full: refused at once
        gate.leave()
        await waiter  # the slot went to the one in line
        assert (gate.active, gate.waiting) == (1, 0)
        gate.leave()
        assert gate.active == 0

    asyncio.run(scenario())


def test_gate_waiter_that_times_out_or_is_cancelled_leaks_nothing() -> None:
    async def scenario() -> None:
        gate = Gate(slots=1, queue=4)
        await gate.enter(1)
        with pytest.raises(Overloaded, match="within 0.05 s"):
            await gate.enter(0.05)
        cancelled = asyncio.create_task(gate.enter(30))
        while gate.waiting == 0:
            await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert gate.waiting == 0
        gate.leave()
        assert gate.active == 0
        await gate.enter(1)  # and the slot is there to take
        assert gate.active == 1

    asyncio.run(scenario())


# --- through the app --------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, rate_limit_per_minute=1, rate_limit_burst=2)
    with serving(settings, FakeAdvisor("Node.js [1].")) as client:
        assert [client.post("/api/ask", json=QUESTION).status_code for _ in range(2)] == [200, 200]
        refused = client.post("/api/ask", json=QUESTION)
        assert_refusal(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60  # a token a minute
        for _ in range(20):  # health checks are never limited
            assert client.get("/healthz").status_code == 200


def test_chat_routes_have_their_own_limit(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        rate_limit_per_minute=1,
        rate_limit_burst=1,
        chat_rate_limit_per_minute=1,
        chat_rate_limit_burst=2,
    )
    with serving(settings, FakeAdvisor("Node.js [1].")) as client:
        assert client.post("/api/ask", json=QUESTION).status_code == 200
        assert client.post("/api/ask", json=QUESTION).status_code == 429
        # Not configured: refused by the route itself until the chat limit is spent.
        statuses = [client.post("/mattermost/commands").status_code for _ in range(3)]
        assert statuses == [503, 503, 429]


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    def statuses(settings: Settings) -> list[int]:
        with serving(settings, FakeAdvisor("Node.js [1].")) as client:
            return [
                client.post(
                    "/api/ask", json=QUESTION, headers={"X-Forwarded-For": f"203.0.113.{n}"}
                ).status_code
                for n in range(3)
            ]

    limited = {"rate_limit_per_minute": 1, "rate_limit_burst": 1}
    assert statuses(settings_for(tmp_path, **limited)) == [200, 429, 429]  # header ignored
    trusted = settings_for(tmp_path, trusted_proxies=["127.0.0.0/8"], **limited)
    assert statuses(trusted) == [200, 200, 200]  # three different clients behind the proxy


def test_zero_turns_the_rate_limit_off(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, rate_limit_per_minute=0, rate_limit_burst=1)
    with serving(settings, FakeAdvisor("Node.js [1].")) as client:
        assert {client.post("/api/ask", json=QUESTION).status_code for _ in range(10)} == {200}


def test_overload_is_refused_at_once_and_the_queue_drains(tmp_path: Path) -> None:
    advisor = BlockingAdvisor()
    settings = settings_for(tmp_path, max_concurrent=1, max_queue=1, request_timeout_s=60)
    with serving(settings, advisor) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/api/ask", json=QUESTION)
        assert advisor.entered.acquire(timeout=30)  # the one slot is taken
        second = pool.submit(client.post, "/api/ask", json=QUESTION)  # waits in line
        gate: Gate = client.app.state.gate  # type: ignore[attr-defined]
        for _ in range(3000):
            if gate.waiting:
                break
            time.sleep(0.01)
        assert gate.waiting == 1
        third = client.post("/api/ask", json=QUESTION)
        assert_refusal(third, 503, "overloaded")
        assert client.get("/healthz").status_code == 200  # health is outside the gate
        advisor.release.set()
        assert first.result(timeout=60).status_code == 200
        assert second.result(timeout=60).status_code == 200


def test_time_limit_answers_504_and_the_slot_comes_back_when_the_work_ends(
    tmp_path: Path,
) -> None:
    advisor = BlockingAdvisor()
    settings = settings_for(tmp_path, max_concurrent=1, max_queue=0, request_timeout_s=0.5)
    with serving(settings, advisor) as client:
        slow = client.post("/api/ask", json=QUESTION)
        assert_refusal(slow, 504, "timeout")
        assert "0.5 s time limit" in slow.json()["error"]["message"]
        # The worker thread still runs and still holds the only slot.
        assert_refusal(client.post("/api/ask", json=QUESTION), 503, "overloaded")
        assert client.get("/healthz").status_code == 200
        advisor.release.set()
        assert advisor.finished.acquire(timeout=30)
        for _ in range(600):  # the slot is handed back on the event loop, just after
            answered = client.post("/api/ask", json=QUESTION)
            if answered.status_code == 200:
                break
            time.sleep(0.05)
        assert answered.status_code == 200 and answered.json()["answer"]


def test_slow_llm_falls_back_to_offline_within_the_time_limit(
    tmp_path: Path, kb_settings: Settings, advisor: Advisor
) -> None:
    with fake_llm() as llm:  # never replies in time: its replies are held
        settings = kb_settings.model_copy(
            update={
                "llm": "openai:test-model",
                "llm_base_url": llm.base_url,
                "llm_timeout_s": 1.0,
                "request_timeout_s": 30.0,
                "data_dir": tmp_path / "data",
            }
        )
        model = make_chat_model(settings)
        chain = Advisor(
            advisor.kb,
            advisor.retriever,
            LLMEngine(model, "openai:test-model"),
            fallback=advisor.engine,
        )
        with serving(settings, chain) as client:
            response = client.post("/api/ask", json=QUESTION)
        assert len(llm.received) == 1  # the LLM was asked, and did not answer in time
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["engine"] == "offline (fallback from llm:openai:test-model)"
    assert any(f.startswith("fallback:") and "offline engine" in f for f in body["flags"])
    assert body["verdict"] == "node" and body["citations"]


def test_llm_timeout_must_fit_in_the_request_time_limit() -> None:
    auto = Settings(_env_file=None, llm="ollama:llama3.1", llm_timeout_s=20)  # type: ignore[call-arg]
    assert auto.request_timeout_s > 2 * 20  # room for condense + answer + the fallback
    assert Settings(_env_file=None).request_timeout_s == 10  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="ADVISOR_REQUEST_TIMEOUT_S"):
        Settings(  # type: ignore[call-arg]
            _env_file=None, llm="ollama:llama3.1", llm_timeout_s=20, request_timeout_s=30
        )


def test_limit_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_RATE_LIMIT_PER_MINUTE", "120")
    monkeypatch.setenv("ADVISOR_MAX_CONCURRENT", "3")
    monkeypatch.setenv("ADVISOR_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("ADVISOR_CORS_ORIGINS", '["https://a.example"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.rate_limit_per_minute, settings.max_concurrent) == (120, 3)
    assert settings.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert settings.cors_origins == ["https://a.example"]
    monkeypatch.setenv("ADVISOR_TRUSTED_PROXIES", "my-proxy")
    with pytest.raises(ConfigError, match="not an IP address"):
        Settings(_env_file=None)  # type: ignore[call-arg]
