"""`advisor bench` pieces on tiny inputs: structure and sanity, never speed."""

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from conftest import CORPUS, make_settings
from support import FakeAdvisor

from app import bench, bench_http, chain
from app.answer import AskRequest
from app.bench_report import TARGETS, markdown, percentiles, verdicts
from app.chain import Advisor
from app.chunking import chunk_corpus
from app.config import Settings
from app.corpus import load_corpus
from app.server import create_app


def test_questions_are_distinct_and_come_from_the_dataset() -> None:
    from app.evaluation import load_dataset

    dataset = [item.question.strip() for item in load_dataset()]
    questions = bench.bench_questions(len(dataset) + 40)
    assert len(questions) == len(set(questions)) == len(dataset) + 40
    assert questions[: len(set(dataset))] == list(dict.fromkeys(dataset))
    rephrased = questions[len(set(dataset)) :]
    assert all(q not in dataset and any(d in q for d in dataset) for q in rephrased)


def test_latency_measures_floor_and_ask_without_cache_hits(advisor: Advisor) -> None:
    questions = bench.bench_questions(4)
    got = bench.measure_latency(advisor, questions, k=5)
    floor, ask, cached = got["floor"], got["ask"], got["ask_cached"]
    assert floor["n"] == ask["n"] == cached["n"] == 4
    for stats in (floor, ask, cached):
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert 0 < floor["embed_p50_ms"] and 0 < floor["search_p50_ms"]
    assert advisor.retriever.embeddings.cache.get(questions[0]) is None  # type: ignore[attr-defined]


def test_fast_path_answers_like_the_lcel_runnable(
    advisor: Advisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = Advisor(advisor.kb, advisor.retriever, advisor.engine)
    request = AskRequest(question="Node or Python for a chat app?")
    fast = fresh.ask(request)
    assert fresh._runnable is None  # no callbacks wanted: LCEL never built
    via_lcel = fresh.runnable.invoke(request)
    skip = {"timings_ms"}
    assert fast.model_dump(exclude=skip) == via_lcel.model_dump(exclude=skip)
    assert fast.verdict == "node" and fast.citations
    monkeypatch.setattr(chain, "_tracing", lambda: True)
    calls: list[Any] = []
    lcel = fresh.runnable
    monkeypatch.setattr(fresh, "_runnable", _Spy(lcel, calls))
    traced = fresh.ask(request)
    assert calls and traced.model_dump(exclude=skip) == fast.model_dump(exclude=skip)


class _Spy:
    def __init__(self, inner: Any, calls: list[Any]) -> None:
        self.inner, self.calls = inner, calls

    def invoke(self, request: Any) -> Any:
        self.calls.append(request)
        return self.inner.invoke(request)


def test_synthetic_corpus_is_valid_varied_markdown(tmp_path: Path) -> None:
    source = next(CORPUS.glob("*.md"))
    original = chunk_corpus(load_corpus(CORPUS))
    versions = bench.synthetic_corpus(source.read_text(encoding="utf-8"), 3)
    assert len(versions) == len(set(versions)) == 3
    for n, text in enumerate(versions, start=1):
        (tmp_path / f"copy-{n}.md").write_text(text, encoding="utf-8")
        assert f"(edition {n})" in text.splitlines()[1]  # the front matter's title
    docs = load_corpus(tmp_path)
    chunks = chunk_corpus(docs)
    assert len(chunks) == 3 * len(original)
    assert len({c.embed_text for c in chunks}) == len(chunks)  # nothing embedded twice
    assert {c.kind for c in chunks} == {c.kind for c in original}  # tables survive
    words = [set(v.split()) for v in versions]
    assert words[0] - words[1] - {f"{n})" for n in range(4)}  # wording differs, not only numbers


def test_percentiles_in_milliseconds() -> None:
    stats = percentiles([0.001 * n for n in range(1, 101)])
    assert stats["n"] == 100
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p95_ms"] == pytest.approx(95.05)
    assert percentiles([]) == {"n": 0}


def _results(**changes: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": "2026-01-01 00:00 UTC",
        "quick": False,
        "seconds": 120.0,
        "questions": 240,
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gib": 8.0,
            "python": "3.11.7",
            "platform": "Linux",
            "load_average": [0.5, 0.4, 0.3],
        },
        "load_after": [0.6, 0.5, 0.4],
        "load_by_step": [["index: full build", 0.5], ["http: 32 clients", 1.25]],
        "floor": {"n": 240, "p50_ms": 8.0, "p95_ms": 12.0, "embed_p50_ms": 6, "search_p50_ms": 2},
        "ask": {"n": 240, "p50_ms": 9.0, "p95_ms": 14.0},
        "textbook": {"n": 240, "p50_ms": 36.0, "p95_ms": 50.0},
        "cold_start": {
            "ask_s": {"median": 3.0, "runs": [3.0, 3.1]},
            "serve_ready_s": {"median": 4.0, "runs": [4.0]},
            "imports_s": 1.9,
            "chroma_imports_s": 1.2,
        },
        "http": {
            "seconds": 10,
            "runs": [
                {"clients": 32, "rps": 160.0, "p50_ms": 30, "p95_ms": 50, "p99_ms": 70}
                | {"errors": 0, "statuses": {}, "requests": 1600}
            ],
        },
        "index": {
            "chunks": 25,
            "full_s": 1.0,
            "nochange_s": 0.05,
            "synthetic": {"scale": 100, "chunks": 2500, "chunks_per_s": 100.0, "tokens": 9},
        },
        "memory": {"server_peak_rss_bytes": 600 * 1024**2},
    }
    return results | changes


def test_targets_say_met_or_by_how_much_they_miss() -> None:
    rows = {row["target"]: row for row in verdicts(_results())}
    assert set(rows) == {t.name for t in TARGETS}
    assert rows["ask p50 / floor p50"]["status"] == "met"
    assert rows["speed-up over the textbook RAG (p50)"]["value"] == pytest.approx(4.0)
    cold = rows["cold `advisor ask` to a printed answer"]
    assert cold["status"] == "missed" and cold["miss"] == pytest.approx(0.5)
    assert cold["miss_pct"] == 20.0 and "chromadb" in cold["why"]
    rate = rows["100× corpus indexing rate"]
    assert rate["status"] == "missed" and rate["miss"] == pytest.approx(50.0)
    assert rows["http errors at 32 clients"]["status"] == "met"
    assert rows["server peak RSS under load"]["status"] == "met"
    missing = verdicts(_results(http={"seconds": 1, "runs": []}))
    assert {r["status"] for r in missing if r["target"].startswith("http")} == {"not measured"}


def test_markdown_report_has_machine_targets_and_figures() -> None:
    results = _results()
    results["targets"] = verdicts(results)
    text = markdown(results)
    assert "Test CPU, 2 cores, 8.0 GiB RAM; Python 3.11.7" in text
    assert "index: full build 0.50; http: 32 clients 1.25" in text
    assert "| target | measured | goal | status | why it misses |" in text
    for target in TARGETS:
        assert f"| {target.name} |" in text
    assert "missed by 0.5 s (20 %)" in text
    assert "| 32 | 160 | 30 | 50 | 70 | 0 | 1600 |" in text


def test_cli_bench_writes_json_and_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(plan: bench.Plan, settings: Settings, tmp: Path, results: dict[str, Any]) -> None:
        assert plan == bench.QUICK and tmp.is_dir()
        results.update({k: v for k, v in _results().items() if k not in results})

    monkeypatch.setattr(bench, "_run", fake_run)
    out = tmp_path / "out" / "results.json"
    args = argparse.Namespace(quick=True, out=str(out))
    assert bench.cli_bench(args, make_settings(tmp_path)) == 0
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and len(saved["targets"]) == len(TARGETS)
    assert saved["machine"]["cores"] and saved["date"]
    assert "## Targets" in out.with_suffix(".md").read_text()


def test_timed_output_sees_the_last_output_before_exit() -> None:
    code = "import time; print('answer', flush=True); time.sleep(0.3)"
    printed, exited = bench_http.timed_output([sys.executable, "-c", code], {})
    assert 0 < printed < exited
    with pytest.raises(RuntimeError, match="exit code 3"):
        bench_http.timed_output([sys.executable, "-c", "print('x'); raise SystemExit(3)"], {})


def test_peak_rss_of_a_process() -> None:
    code = "import time; print('up', flush=True); time.sleep(5)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"up\n"
        server = bench_http.Server(process, "http://127.0.0.1:1", 0.0)
        assert (server.peak_rss_bytes() or 0) > 1024**2
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[str]:
    """The real app with a fake advisor, served on a free loopback port."""
    settings = make_settings(tmp_path, rate_limit_per_minute=0)
    app = create_app(settings, advisor=FakeAdvisor("Node.js [1]."), ui=False)  # type: ignore[arg-type]
    port = bench_http.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_http_load_counts_requests_latencies_and_errors(fake_server: str) -> None:
    got = bench_http.load(fake_server, ["Node or Python?", "Which ORM?"], clients=4, seconds=0.5)
    assert got["clients"] == 4 and got["errors"] == 0 and got["statuses"] == {}
    assert got["requests"] > 0 and got["rps"] > 0
    assert 0 < got["p50_ms"] <= got["p95_ms"] <= got["p99_ms"]
    bad = bench_http.load(fake_server + "/nowhere", ["x"], clients=2, seconds=0.2)
    assert bad["errors"] == bad["requests"] > 0 and set(bad["statuses"]) == {"404"}


def test_import_seconds_times_each_group_in_one_interpreter() -> None:
    times = bench_http.import_seconds(dict(os.environ), "json", "csv, decimal")
    assert len(times) == 2 and all(0 <= t < 30 for t in times)
