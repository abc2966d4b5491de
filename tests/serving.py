"""Helpers for tests that run a real `advisor serve` process, and a local fake LLM server."""

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from app.bench_http import child_env, free_port
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
ADVISOR = ROOT / ".venv" / "bin" / "advisor"
STARTUP_S = 180.0  # a loaded 2-core machine can take a while to import and load everything

# A reply the LLM engine accepts: a verdict and markers that resolve to retrieved chunks.
LLM_REPLY = (
    "VERDICT: node\nSTRENGTH: clear\n"
    "Node.js fits real-time chat because of its event loop [1]. The article says so [2]."
)


def served_dirs(base: Path, kb: Settings, model_cache: Path) -> dict[str, str]:
    """ADVISOR_* variables for a private copy of the session's corpus, index and ONNX export."""
    index_dir = base / "index"
    shutil.copytree(kb.index_dir, index_dir)
    shutil.copytree(model_cache, index_dir, dirs_exist_ok=True)  # no ONNX export at start-up
    shutil.copytree(kb.corpus_dir, base / "corpus")
    return {
        "ADVISOR_CORPUS_DIR": str(base / "corpus"),
        "ADVISOR_INDEX_DIR": str(index_dir),
        "ADVISOR_DATA_DIR": str(base / "data"),
    }


@dataclass
class Served:
    """A running `advisor serve` and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")


@contextmanager
def advisor_server(env: dict[str, str], log: Path) -> Iterator[Served]:
    """Start `advisor serve` on a free port, wait until /readyz says ready, stop it after."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ADVISOR), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(served)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def wait_ready(served: Served) -> None:
    """Block until /readyz answers 200; fail with the server's output if it never does."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{served.output()[-4000:]}")
        try:
            if httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready in {STARTUP_S:g} s:\n{served.output()[-4000:]}")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class FakeLLM:
    """A local OpenAI-compatible server that holds every reply until `release` is set."""

    reply: str = LLM_REPLY
    release: threading.Event = field(default_factory=threading.Event)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    @property
    def base_url(self) -> str:
        """What ADVISOR_LLM_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for(self, count: int, timeout: float = 120.0) -> bool:
        """Whether `count` requests have arrived within `timeout` seconds."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= count, timeout)


def chat_completion(content: str, model: str) -> dict[str, Any]:
    """An OpenAI chat-completions reply carrying `content`."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake: FakeLLM = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with fake.arrived:
            fake.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            fake.arrived.notify_all()
        fake.release.wait(120)  # bounded: a test that forgets to release still ends
        data = json.dumps(chat_completion(fake.reply, body.get("model", "test-model"))).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (its timeout)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_llm(reply: str = LLM_REPLY) -> Iterator[FakeLLM]:
    """A running FakeLLM on 127.0.0.1; released and stopped on exit."""
    fake = FakeLLM(reply=reply)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    fake.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
