"""A bounded soak of a real server: every request answered or refused cleanly, no memory creep.

Short form in `make test`; the long form (figures written to bench/soak.md) runs with
`SOAK_SECONDS=60 .venv/bin/pytest tests/test_soak.py -s`.
"""

import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from serving import ROOT, advisor_server, rss_kib, served_dirs

from app.config import Settings

LONG_SECONDS = float(os.environ.get("SOAK_SECONDS", "0"))  # read at import: conftest clears env
SOAK_SECONDS = LONG_SECONDS or 12.0
WARMUP_SECONDS = 4.0
CLIENTS = 32
BURST = 200
MAX_RSS_GROWTH = 0.10
QUESTIONS = [
    {"question": "Node or Python for a real-time chat app?"},
    {"question": "Node or Python for ML model serving?"},
    {"question": "Should I use Node.js or Python for data pipelines / ETL?"},
    {"question": "Which ORMs does the article list for Node.js?"},
    {"question": "What job queues are there for Python?"},
    {"question": "Go or Rust for a CLI tool?"},
    {"question": "Node or Python for a GraphQL API?"},
    {
        "question": "and what about microservices?",
        "history": [
            {"role": "user", "content": "Node or Python for a chat app?"},
            {"role": "assistant", "content": "Node.js, for its event loop [1]."},
        ],
    },
]


@dataclass
class Tally:
    """What came back in one phase."""

    statuses: Counter[int] = field(default_factory=Counter)
    unclean: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def add(self, response: httpx.Response | Exception, elapsed_s: float) -> None:
        if isinstance(response, Exception):
            self.unclean.append(f"{type(response).__name__}: {response}")
            return
        self.statuses[response.status_code] += 1
        problem = _unclean(response)
        if problem:
            self.unclean.append(f"{response.status_code}: {problem}: {response.text[:200]}")
        elif response.status_code == 200:
            self.latencies_ms.append(elapsed_s * 1000)

    def line(self, name: str) -> str:
        lat = sorted(self.latencies_ms) or [0.0]
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
        rate = self.statuses[200] / self.seconds if self.seconds else 0.0
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"| {name} | {self.total} | {codes} | {len(self.unclean)} | {rate:.0f} | "
            f"{statistics.median(lat):.0f} | {p95:.0f} |"
        )


def _unclean(response: httpx.Response) -> str | None:
    """Why a response is not a clean answer or refusal; None when it is."""
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    if response.status_code == 200:
        return None if body.get("answer") and body.get("kb_version") else "no answer"
    if response.status_code in (429, 503):
        error = body.get("error") or {}
        if not (error.get("code") and error.get("message")):
            return "not the error shape"
        if not response.headers.get("retry-after", "").isdigit():
            return "no Retry-After"
        return None
    return "unexpected status"


async def _one(client: httpx.AsyncClient, n: int, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        response: httpx.Response | Exception = await client.post(
            "/api/ask", json=QUESTIONS[n % len(QUESTIONS)]
        )
    except httpx.HTTPError as exc:
        response = exc
    tally.add(response, time.perf_counter() - started)


async def _load(url: str, seconds: float, clients: int) -> Tally:
    """`clients` loops asking back to back for `seconds`."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            await _one(client, n, tally)
            n += clients

    # Dropping idle connections well before uvicorn does (5 s) avoids the client-side race
    # of sending on a connection the server is closing, which is no fault of the server.
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=1.0
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        tally.seconds = time.monotonic() - started
    return tally


async def _burst(url: str, size: int) -> Tally:
    """`size` requests at once, each on its own connection."""
    tally = Tally()
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(_one(client, n, tally) for n in range(size)))
        tally.seconds = time.monotonic() - started
    return tally


@pytest.mark.slow
def test_soak_then_burst_answers_or_refuses_cleanly_without_memory_creep(
    tmp_path: Path, kb_settings: Settings, model_cache: Path
) -> None:
    env = served_dirs(tmp_path, kb_settings, model_cache) | {
        # Every client here is 127.0.0.1: keep the rate limit on, but out of the way.
        "ADVISOR_RATE_LIMIT_PER_MINUTE": "6000000",
        "ADVISOR_RATE_LIMIT_BURST": "100000",
    }
    with advisor_server(env, tmp_path / "server.log") as served:
        pid = served.process.pid
        warmup = asyncio.run(_load(served.url, WARMUP_SECONDS, CLIENTS))
        warm_burst = asyncio.run(_burst(served.url, BURST))
        rss_warm = rss_kib(pid)
        soak = asyncio.run(_load(served.url, SOAK_SECONDS, CLIENTS))
        burst = asyncio.run(_burst(served.url, BURST))
        rss_end = rss_kib(pid)
        alive = served.process.poll() is None
        health = httpx.get(f"{served.url}/readyz", timeout=30).status_code
        output = served.output()

    growth = (rss_end - rss_warm) / rss_warm
    report = _report(warmup, warm_burst, soak, burst, rss_warm, rss_end)
    print("\n" + report)
    if LONG_SECONDS:
        (ROOT / "bench").mkdir(exist_ok=True)
        (ROOT / "bench" / "soak.md").write_text(report)

    assert alive and health == 200, output[-3000:]
    for name, tally in (("warm-up", warmup), ("soak", soak), ("burst", burst)):
        assert not tally.unclean, f"{name}: {tally.unclean[:5]}"
    assert soak.statuses[200] >= CLIENTS  # the soak really answered, not only refused
    # 32 clients fit in the gate's slots and queue: the soak itself sees zero 5xx.
    assert set(soak.statuses) == {200}, soak.statuses
    assert burst.total == BURST and burst.statuses[200] > 0
    assert set(burst.statuses) <= {200, 503}  # overload is refused quickly, never a 5xx else
    assert "Traceback" not in output, output[-3000:]
    assert growth < MAX_RSS_GROWTH, report


def _report(
    warmup: Tally, warm_burst: Tally, soak: Tally, burst: Tally, rss_warm: int, rss_end: int
) -> str:
    growth = (rss_end - rss_warm) / rss_warm * 100
    cores = os.cpu_count()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return "\n".join(
        [
            "# Soak test",
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cores} cores, the offline engine, "
            f"`advisor serve` on 127.0.0.1 with the default gate ({settings.max_concurrent} "
            f"answering at once, queue {settings.max_queue}, time limit "
            f"{settings.request_timeout_s:g} s). {CLIENTS} clients ask back to back; a burst "
            f"sends {BURST} at once. Produced by `SOAK_SECONDS={SOAK_SECONDS:g} "
            ".venv/bin/pytest tests/test_soak.py -s`.",
            "",
            "| phase | requests | by status | unclean | answers/s | p50 ms | p95 ms |",
            "| --- | --: | --- | --: | --: | --: | --: |",
            warmup.line(f"warm-up {WARMUP_SECONDS:g} s"),
            warm_burst.line(f"warm-up burst of {BURST}"),
            soak.line(f"soak {SOAK_SECONDS:g} s"),
            burst.line(f"burst of {BURST}"),
            "",
            f"RSS after warm-up {rss_warm / 1024:.0f} MiB, after soak and burst "
            f"{rss_end / 1024:.0f} MiB: {growth:+.1f}% (limit +{MAX_RSS_GROWTH * 100:.0f}%).",
            "",
            "Clean means: 200 with an answer, or 429/503 with the JSON error and Retry-After.",
            "",
        ]
    )
