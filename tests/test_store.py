"""A shared Chroma server: index and search through it, then lose it and get a clear error."""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_settings
from langchain_core.embeddings import Embeddings

from app import index, store
from app.bench_http import free_port
from app.config import Settings
from app.errors import IndexUnavailable
from app.retrieval import HybridRetriever

ROOT = Path(__file__).resolve().parents[1]
CHROMA = ROOT / ".venv" / "bin" / "chroma"


class ChromaServer:
    """A real `chroma run` on 127.0.0.1 with its own data dir; can be stopped and restarted."""

    def __init__(self, data: Path, log: Path, port: int | None = None) -> None:
        self.data, self.log, self.port = data, log, port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, deadline_s: float = 60) -> None:
        """Start the server and wait (generously: the machine is shared) until it answers."""
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        command = [CHROMA, "run", "--path", self.data, "--host", "127.0.0.1", "--port", self.port]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(part) for part in command], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + deadline_s
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"chroma run exited with {self.process.returncode}: {self.output()}")
            try:
                url = f"http://127.0.0.1:{self.port}/api/v2/heartbeat"
                if httpx.get(url, timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma run did not answer within {deadline_s} s: {self.output()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate the server (kill it if it does not go) and wait until it has exited."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    """`chroma run` on a free port with its own data dir, stopped however the test ends."""
    server = ChromaServer(tmp_path / "server-data", tmp_path / "chroma.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def server_settings(base: Path, port: int) -> Settings:
    return make_settings(base, chroma_host="127.0.0.1", chroma_port=port)


def assert_clear(error: pytest.ExceptionInfo[IndexUnavailable], port: int) -> None:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    assert f"127.0.0.1:{port}" in message


def test_index_and_search_through_a_chroma_server(
    chroma_server: ChromaServer, tmp_path: Path, embeddings: Embeddings
) -> None:
    port = chroma_server.port
    settings = server_settings(tmp_path / "app1", port)
    assert store.describe(settings) == f"Chroma server at 127.0.0.1:{port}"
    assert index.staleness(settings) == "no index yet"

    n = len(index.current_chunks(settings))
    report = index.sync(settings, embeddings)
    assert report.added == n and report.embedded == n
    assert not (settings.index_dir / "chroma").exists()  # nothing was written locally
    assert index.staleness(settings) is None

    kb = index.load(settings, embeddings)
    assert kb.kb_version == report.kb_version and len(kb.chunks) == n
    retriever = HybridRetriever(kb, embeddings)
    hits = retriever.retrieve(retriever.embed("live multiplayer leaderboard with instant updates"))
    assert hits[0].chunk.metadata.get("row_key") == "real-time-apps-chat-gaming"

    # A second app instance (its own settings and corpus copy) sees the same index, through the
    # one client the process keeps per server (chromadb leaks a system per client it makes).
    other = server_settings(tmp_path / "app2", port)
    client = store.open_client(other)
    assert client is store.open_client(settings) is kb.client
    timeout = client._server._session.timeout  # chromadb's default is no timeout at all
    assert timeout.connect == store.CONNECT_TIMEOUT_S and timeout.read == store.READ_TIMEOUT_S
    second = index.load(other, embeddings)
    assert second.kb_version == kb.kb_version
    assert second.collection == kb.collection
    again = index.sync(other, embeddings)
    assert again.embedded == 0 and again.unchanged == n
    other_hits = HybridRetriever(second, embeddings).retrieve(retriever.embed("Dramatiq"), 3)
    assert other_hits[0].chunk.location == "Ecosystem Comparison#row:job-queues"

    # The server goes away: every entry point says so in one line, never with a traceback.
    chroma_server.stop()
    with pytest.raises(IndexUnavailable) as caught:
        index.load(settings, embeddings)
    assert_clear(caught, port)
    assert "chroma run" in str(caught.value)
    with pytest.raises(IndexUnavailable) as caught:
        store.open_client(settings)
    assert_clear(caught, port)
    with pytest.raises(IndexUnavailable) as caught:
        kb.dense_search(embeddings.embed_query("chat"), 3)
    assert_clear(caught, port)
    with pytest.raises(IndexUnavailable) as caught:
        index.sync(settings, embeddings)
    assert_clear(caught, port)
    stale = index.staleness(settings)
    assert stale is not None and f"127.0.0.1:{port}" in stale


def test_no_server_listening_is_a_clear_error(tmp_path: Path, embeddings: Embeddings) -> None:
    port = free_port()
    settings = server_settings(tmp_path, port)
    with pytest.raises(IndexUnavailable) as caught:
        store.open_client(settings)
    assert_clear(caught, port)
    assert "chroma run --path DIR --port" in str(caught.value)
    assert "ADVISOR_CHROMA_HOST" in str(caught.value)
    with pytest.raises(IndexUnavailable) as caught:
        index.load(settings, embeddings)
    assert_clear(caught, port)
