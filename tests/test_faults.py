"""Faults while serving: the index deleted, corrupted or rebuilt elsewhere, the Chroma server
stopped. Requests get a 503 that says why, then answers resume in the same process."""

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, make_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.embeddings import Embeddings
from test_store import ChromaServer

from app import index, store
from app.chain import Advisor
from app.config import Settings
from app.deps import live_advisor
from app.embeddings import onnx_path
from app.errors import IndexUnavailable
from app.reload import CHECK_EVERY_S, RETRY_EVERY_S, Reloader
from app.runtime import build_advisor
from app.server import create_app

QUESTION = "Node or Python for a real-time chat app?"


class Memo(Embeddings):
    """The session's embeddings, already knowing every vector of the session index."""

    def __init__(self, inner: Embeddings, known: dict[str, list[float]]) -> None:
        self.inner, self.known = inner, known

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return [self.known[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


@pytest.fixture(scope="module")
def memo(kb_settings: Settings, embeddings: Embeddings) -> Memo:
    kb = index.load(kb_settings, embeddings)
    known = {c.embed_text: v.tolist() for c, v in zip(kb.chunks, kb.vectors, strict=True)}
    return Memo(embeddings, known)


@dataclass
class Served:
    """An app serving the real advisor over its own index, and a client for it."""

    settings: Settings
    app: FastAPI
    client: TestClient

    def ask(self, question: str = QUESTION) -> httpx.Response:
        return self.client.post("/api/ask", json={"question": question})

    def ready(self) -> httpx.Response:
        return self.client.get("/readyz")


def serve(settings: Settings, embeddings: Embeddings) -> Served:
    advisor = build_advisor(settings, embeddings=embeddings, refresh=False, quiet=True)
    app = create_app(settings, advisor=advisor, ui=False)
    return Served(settings, app, TestClient(app))


@pytest.fixture
def embedded(tmp_path: Path, kb_settings: Settings, memo: Memo) -> Served:
    """The app over a private copy of the session index."""
    settings = make_settings(tmp_path)
    shutil.copytree(store.chroma_path(kb_settings), store.chroma_path(settings))
    return serve(settings, memo)


def answered(response: httpx.Response) -> str:
    """The answer's kb_version, after checking it is a real answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "node" and body["citations"]
    return str(body["kb_version"])


def assert_unavailable(response: httpx.Response, *words: str) -> str:
    """A 503 in the error shape whose one-line message holds `words`; returns the message."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    expected = "not_ready" if response.request.url.path == "/readyz" else "index_unavailable"
    assert error["code"] == expected
    message = str(error["message"])
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message
    return message


def chroma_systems() -> set[str]:
    """What chromadb keeps open in this process (one entry per database or client)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    return set(SharedSystemClient._identifier_to_system)


class FakeClock:
    """Time that moves only when the test says so: no sleeping, no timing assumptions."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingClient:
    """A Chroma client that counts the collection look-ups a manifest read makes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lookups = inner, 0

    def get_collection(self, name: str) -> Any:
        self.lookups += 1
        return self.inner.get_collection(name)


def test_the_manifest_is_read_only_when_due(embedded: Served) -> None:
    clock = FakeClock()
    embedded.app.state.reloader = Reloader(embedded.app.state, clock=clock)
    kb = embedded.app.state.advisor.kb
    kb.client = counting = CountingClient(kb.client)
    for _ in range(5):
        answered(embedded.ask())
    assert counting.lookups == 0  # per request: one stat of the database file, nothing more
    clock.advance(CHECK_EVERY_S)
    answered(embedded.ask())
    answered(embedded.ask())
    assert counting.lookups == 1
    sqlite = store.chroma_path(embedded.settings) / "chroma.sqlite3"
    os.utime(sqlite, ns=(sqlite.stat().st_atime_ns, sqlite.stat().st_mtime_ns + 1))
    answered(embedded.ask())  # something wrote to it: looked at before the timer is due
    assert counting.lookups == 2


def test_deleted_index_is_503_until_advisor_index_rebuilds_it(embedded: Served, memo: Memo) -> None:
    version = answered(embedded.ask())
    assert embedded.ready().json()["kb_version"] == version
    loaded = embedded.app.state.advisor
    systems = chroma_systems()

    shutil.rmtree(embedded.settings.index_dir)
    where = f"No index at {store.chroma_path(embedded.settings)}: run `advisor index`"
    for response in (embedded.ready(), embedded.ask(), embedded.ask(), embedded.ready()):
        assert_unavailable(response, where)

    report = index.sync(embedded.settings, memo)  # what `advisor index` does
    assert report.rebuilt and report.kb_version == version
    assert answered(embedded.ask()) == version  # the very next request: same process, no restart
    ready = embedded.ready()
    assert ready.status_code == 200 and ready.json()["kb_version"] == version
    assert embedded.app.state.advisor is not loaded  # a fresh advisor, swapped in
    assert chroma_systems() == systems  # the deleted database's handle was dropped, not kept


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_index_is_503_until_rebuilt(embedded: Served, memo: Memo, damage: str) -> None:
    version = answered(embedded.ask())
    sqlite = store.chroma_path(embedded.settings) / "chroma.sqlite3"
    if damage == "garbage":
        sqlite.write_bytes(b"this is not a sqlite database " * 512)
    else:  # a partial copy, a full disk
        sqlite.write_bytes(sqlite.read_bytes()[: sqlite.stat().st_size // 2])

    for response in (embedded.ask(), embedded.ready(), embedded.ask()):
        assert_unavailable(response, str(store.chroma_path(embedded.settings)), "--rebuild")
    with pytest.raises(IndexUnavailable, match="advisor index --rebuild"):
        index.sync(embedded.settings, memo)  # a plain `advisor index` will not build over it

    report = index.sync(embedded.settings, memo, rebuild=True)  # `advisor index --rebuild`
    assert report.kb_version == version
    assert answered(embedded.ask()) == version
    assert embedded.ready().status_code == 200
    assert len(list(embedded.settings.index_dir.glob("chroma.corrupt-*"))) == 1  # kept aside


@pytest.mark.slow  # a child process; runs in `make test` (nothing deselects it)
def test_reindex_by_another_process_is_picked_up(embedded: Served, model_cache: Path) -> None:
    before = answered(embedded.ask())
    settings = embedded.settings
    article = settings.corpus_dir / "node-vs-python-2026.md"
    article.write_text(
        article.read_text().replace("That framing misses the point.", "That framing is wrong.")
    )
    export = onnx_path(settings.index_dir)
    export.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(onnx_path(model_cache), export)  # spares the child a slow ONNX export
    env = {
        **os.environ,
        "ADVISOR_CORPUS_DIR": str(settings.corpus_dir),
        "ADVISOR_INDEX_DIR": str(settings.index_dir),
        "ADVISOR_DATA_DIR": str(settings.data_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "index"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "0 added, 1 updated, 0 removed" in done.stdout

    after = answered(embedded.ask())  # the next request sees the other process's switch
    assert after != before and f"(kb {after})" in done.stdout
    assert embedded.ready().json()["kb_version"] == after


def test_concurrent_requests_share_one_reload(embedded: Served, memo: Memo) -> None:
    answered(embedded.ask())
    shutil.rmtree(embedded.settings.index_dir)
    assert_unavailable(embedded.ask())
    index.sync(embedded.settings, memo)

    start = threading.Barrier(8)
    got: list[Advisor | IndexUnavailable] = []

    def request() -> None:
        start.wait()
        try:
            got.append(live_advisor(embedded.app))
        except IndexUnavailable as exc:  # another request is reloading: the old verdict stands
            got.append(exc)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(got) == 8
    advisors = {id(a) for a in got if not isinstance(a, IndexUnavailable)}
    assert advisors == {id(embedded.app.state.advisor)}  # one reload, one new advisor for all
    for error in (e for e in got if isinstance(e, IndexUnavailable)):
        assert "No index at" in str(error)
    assert answered(embedded.ask())


@pytest.mark.slow  # a child process; runs in `make test` (nothing deselects it)
def test_chroma_server_stopped_restarted_and_reindexed(tmp_path: Path, memo: Memo) -> None:
    server = ChromaServer(tmp_path / "server-data", tmp_path / "chroma.log")
    try:
        server.start()
        settings = make_settings(tmp_path / "app", chroma_host="127.0.0.1", chroma_port=server.port)
        index.sync(settings, memo)
        served = serve(settings, memo)
        clock = FakeClock()
        served.app.state.reloader = Reloader(served.app.state, clock=clock)
        version = answered(served.ask())
        systems = chroma_systems()

        server.stop()
        unreachable = f"Chroma server at 127.0.0.1:{server.port} is unreachable"
        for response in (served.ask(), served.ready(), served.ask()):
            assert_unavailable(response, unreachable, "chroma run --path DIR --port")

        server.start()  # same port, same data
        assert_unavailable(served.ask(), unreachable)  # not looked at again yet: no retry storm
        clock.advance(RETRY_EVERY_S)
        assert answered(served.ask()) == version  # back by itself, same process
        assert served.ready().status_code == 200

        # Another replica re-indexes on the shared server: picked up at the next manifest check,
        # and until then the previous index (kept one generation) still answers.
        replica = make_settings(
            tmp_path / "replica", chroma_host="127.0.0.1", chroma_port=server.port
        )
        versions = []
        for n in range(3):
            (replica.corpus_dir / "extra.md").write_text(f"# Extra\n\n## Note\n\nNote {n}.\n")
            versions.append(index.sync(replica, memo).kb_version)
            if n == 0:
                assert answered(served.ask()) == version
                clock.advance(CHECK_EVERY_S)
                assert answered(served.ask()) == versions[0]
        # Two more switches before this app looked again: its collection is gone.
        assert_unavailable(served.ask(), "replaced or deleted", "try again")
        assert answered(served.ask()) == versions[-1]
        assert chroma_systems() == systems  # one client per server, however often it reloads
    finally:
        server.stop()
