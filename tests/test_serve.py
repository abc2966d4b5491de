"""`advisor serve` as a real process: SIGTERM under load drains in-flight requests, exits 0."""

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import advisor_server, fake_llm, served_dirs

from app.config import Settings

IN_FLIGHT = 6


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
    tmp_path: Path, kb_settings: Settings, model_cache: Path
) -> None:
    with fake_llm() as llm:
        env = served_dirs(tmp_path, kb_settings, model_cache) | {
            # Answers wait on the local fake LLM, so they are provably in flight at SIGTERM.
            "ADVISOR_LLM": "openai:test-model",
            "ADVISOR_LLM_BASE_URL": llm.base_url,
            "ADVISOR_LLM_TIMEOUT_S": "60",
            "ADVISOR_REQUEST_TIMEOUT_S": "150",
            "ADVISOR_MAX_CONCURRENT": str(IN_FLIGHT),
        }
        with advisor_server(env, tmp_path / "server.log") as served:
            results: list[httpx.Response | Exception] = []
            lock = threading.Lock()

            def ask(n: int) -> None:
                question = {"question": f"Node or Python for a real-time chat app, case {n}?"}
                try:
                    response = httpx.post(f"{served.url}/api/ask", json=question, timeout=120)
                except Exception as exc:  # recorded, so the assertion below names it
                    response = exc  # type: ignore[assignment]
                with lock:
                    results.append(response)

            askers = [threading.Thread(target=ask, args=(n,)) for n in range(IN_FLIGHT)]
            for thread in askers:
                thread.start()
            assert llm.wait_for(IN_FLIGHT), f"only {len(llm.received)} reached the LLM"

            served.process.send_signal(signal.SIGTERM)
            refused = _first_refusal(served.url, served.process)
            assert refused is not None, "new connections were still accepted after SIGTERM"
            assert served.process.poll() is None  # still draining: the answers are held
            llm.release.set()

            for thread in askers:
                thread.join(timeout=120)
            code = served.process.wait(timeout=60)
            output = served.output()

    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert len(results) == IN_FLIGHT
    for response in results:
        assert isinstance(response, httpx.Response), f"in-flight request failed: {response!r}"
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["engine"] == "llm:openai:test-model"  # answered, not cut short
        assert body["verdict"] == "node" and body["citations"]


def _first_refusal(url: str, process: Any, within_s: float = 60.0) -> Exception | None:
    """The first refused connection after SIGTERM, while the process still runs."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{url}/healthz", timeout=5)
        except httpx.ConnectError as exc:
            # Once refused, a fresh question is refused too.
            with pytest.raises(httpx.ConnectError):
                httpx.post(f"{url}/api/ask", json={"question": "Node or Python?"}, timeout=5)
            return exc
        time.sleep(0.05)
    return None
