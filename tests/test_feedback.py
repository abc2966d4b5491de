"""The feedback store: votes, paging, WAL, errors, durability under kill -9, and its routes."""

import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import feedback
from app.config import Settings
from app.errors import AdvisorError, BadRequest
from app.feedback import FeedbackStore

ROOT = Path(__file__).resolve().parents[1]


def vote(store: FeedbackStore, n: int, kind: str = "up") -> int:
    return store.add(f"question {n}", f"answer {n}", "node", "kb1", kind)


def test_add_list_and_count(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "data" / "feedback.sqlite3")
    assert not (tmp_path / "data").exists()  # nothing is created until first use
    first = store.add("Node or Python for chat?", "Node.js [1]", "node", "abc", "up")
    second = store.add("And for ML?", "Python [1]", None, "abc", "down", comment="too short")
    assert second > first
    assert store.count() == 2
    items = store.list()
    assert [i["id"] for i in items] == [second, first]
    assert items[0] | {"created_at": None} == {
        "id": second,
        "created_at": None,
        "question": "And for ML?",
        "answer": "Python [1]",
        "verdict": None,
        "kb_version": "abc",
        "vote": "down",
        "comment": "too short",
    }
    assert items[1]["created_at"].endswith("Z") and "T" in items[1]["created_at"]


def test_paging_is_newest_first(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite3")
    ids = [vote(store, n) for n in range(7)]
    assert [i["id"] for i in store.list(limit=3)] == ids[::-1][:3]
    assert [i["id"] for i in store.list(limit=3, offset=3)] == ids[::-1][3:6]
    assert [i["id"] for i in store.list(limit=3, offset=6)] == ids[:1]
    assert store.list(limit=3, offset=7) == []


def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    vote(FeedbackStore(path), 1)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_vote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="'up' or 'down'"):
        vote(FeedbackStore(tmp_path / "f.sqlite3"), 1, kind="meh")


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite3")

    def write(base: int) -> None:
        for n in range(25):
            vote(store, base + n)

    threads = [threading.Thread(target=write, args=(t * 100,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 200


def test_corrupt_database_says_so(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(AdvisorError, match="is corrupt .*move it aside"):
        vote(FeedbackStore(path), 1)


def test_unwritable_location_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(AdvisorError, match="Cannot create the feedback directory"):
        vote(FeedbackStore(blocker / "f.sqlite3"), 1)


CHILD = """
import sys
from pathlib import Path
from app.feedback import FeedbackStore

store = FeedbackStore(Path(sys.argv[1]))
n = 0
while True:
    n += 1
    new_id = store.add(f"question {n}", "answer " * 50, "python", "kb1", "up")
    print(new_id, flush=True)
"""


def test_acknowledged_votes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    acked: list[int] = []
    try:
        while len(acked) < 100:
            line = child.stdout.readline()
            assert line, f"writer died early: {child.stderr.read()}"
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)
        # Lines printed before the kill landed are acknowledged too; a cut-off line is not.
        for line in child.stdout:
            if line.endswith("\n"):
                acked.append(int(line))
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM feedback")}
    assert set(acked) <= stored
    assert FeedbackStore(path).count() == len(stored)  # and it opens fine afterwards


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = FastAPI()
    app.state.settings = Settings(_env_file=None)  # type: ignore[call-arg]  # loopback, no token
    app.state.feedback = FeedbackStore(tmp_path / "f.sqlite3")
    app.include_router(feedback.router)
    return TestClient(app)


def test_post_then_get(client: TestClient) -> None:
    body = {
        "question": "Node or Python for ETL?",
        "answer": "Python [1]",
        "verdict": "python",
        "kb_version": "abc",
        "vote": "up",
    }
    created = client.post("/api/feedback", json=body)
    assert created.status_code == 201
    got = client.get("/api/feedback").json()
    assert got["total"] == 1 and got["limit"] == 50 and got["offset"] == 0
    assert got["items"][0]["id"] == created.json()["id"]
    assert got["items"][0]["vote"] == "up" and got["items"][0]["verdict"] == "python"


def test_get_pages(client: TestClient) -> None:
    store: FeedbackStore = client.app.state.feedback  # type: ignore[attr-defined]
    ids = [vote(store, n) for n in range(5)]
    page = client.get("/api/feedback", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 5
    assert [i["id"] for i in page["items"]] == [ids[2], ids[1]]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}])
def test_get_refuses_bad_paging(client: TestClient, params: dict[str, int]) -> None:
    assert client.get("/api/feedback", params=params).status_code == 422


@pytest.mark.parametrize(
    "change", [{"vote": "sideways"}, {"verdict": "rust"}, {"extra": 1}, {"question": ""}]
)
def test_post_refuses_bad_votes(client: TestClient, change: dict[str, object]) -> None:
    body = {"question": "q", "answer": "a", "verdict": None, "kb_version": "k", "vote": "down"}
    assert client.post("/api/feedback", json=body | change).status_code == 422
