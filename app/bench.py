"""`advisor bench`: latency against its floor and a textbook RAG, cold starts, HTTP load,
indexing and memory, measured on this machine and written as JSON plus a Markdown report."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from app import bench_http
from app.bench_report import machine, markdown, percentiles, verdicts
from app.chain import Advisor
from app.config import Settings
from app.index import KnowledgeBase

DEFAULT_OUT = Path("bench/results.json")
COLD_QUESTION = "Node or Python for a chat app?"
# Ways to re-ask a dataset question, so a run can use more questions than the dataset has.
REPHRASINGS = ["{q}", "Quick question: {q}", "{q} Asking for my team.", "In 2026: {q}"]
# Word swaps for the synthetic corpus: each copy of the article words its sections differently.
SWAPS = {
    "faster": ["quicker", "speedier"],
    "better": ["stronger", "preferable"],
    "choose": ["pick", "select"],
    "team": ["crew", "group"],
    "strong": ["solid", "robust"],
    "ecosystem": ["library landscape", "package ecosystem"],
    "heavy": ["intensive", "demanding"],
    "apps": ["applications", "services"],
    "language": ["runtime language", "programming language"],
    "dominate": ["lead", "prevail"],
}


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run, or a quick one to check the bench itself."""

    questions: int
    cold_runs: int
    serve_runs: int
    http_seconds: float
    scale: int


FULL = Plan(questions=240, cold_runs=5, serve_runs=3, http_seconds=10.0, scale=100)
QUICK = Plan(questions=30, cold_runs=1, serve_runs=1, http_seconds=2.0, scale=5)


def bench_questions(n: int) -> list[str]:
    """`n` distinct questions: the eval dataset's, then the same re-asked in other words."""
    from app.evaluation import load_dataset

    base = list(dict.fromkeys(item.question.strip() for item in load_dataset()))
    out: list[str] = []
    for form in REPHRASINGS:
        out += [form.format(q=q) for q in base]
        if len(out) >= n:
            break
    return list(dict.fromkeys(out))[:n]


def warm_up(questions: list[str], n: int = 40) -> list[str]:
    """Questions to run before timing: like the first `n`, but never cache hits for them."""
    return [f"Before we start: {q}" for q in questions[:n]]


def clear_cache(embeddings: Embeddings) -> None:
    """Forget cached question vectors, so a measurement never times a cache hit."""
    cache = getattr(embeddings, "cache", None)
    if cache is not None:
        cache.clear()


def measure_latency(advisor: Advisor, questions: list[str], k: int) -> dict[str, dict[str, Any]]:
    """Floor (embed + one vector search) and the whole chain, question by question in turn."""
    embeddings, kb = advisor.retriever.embeddings, advisor.kb
    for q in warm_up(questions):  # the runtime's buffers for each input length, lazy code paths
        advisor.ask(q)
        _floor_once(embeddings, kb, q, k)
    embed, search, floor, ask = [], [], [], []
    for q in questions:  # interleaved, so a change of load on the machine hits both alike
        clear_cache(embeddings)
        e, s = _floor_once(embeddings, kb, q, k)
        embed.append(e)
        search.append(s)
        floor.append(e + s)
        clear_cache(embeddings)
        began = time.perf_counter()
        advisor.ask(q)
        ask.append(time.perf_counter() - began)
    repeated = []
    for q in questions:  # asked twice: the second time its vector comes from the cache
        advisor.ask(q)
        began = time.perf_counter()
        advisor.ask(q)
        repeated.append(time.perf_counter() - began)
    clear_cache(embeddings)
    floor_stats = percentiles(floor)
    floor_stats["embed_p50_ms"] = percentiles(embed)["p50_ms"]
    floor_stats["search_p50_ms"] = percentiles(search)["p50_ms"]
    return {"floor": floor_stats, "ask": percentiles(ask), "ask_cached": percentiles(repeated)}


def _floor_once(embeddings: Embeddings, kb: KnowledgeBase, q: str, k: int) -> tuple[float, float]:
    began = time.perf_counter()
    vector = embeddings.embed_query(q)
    embedded = time.perf_counter()
    kb.dense_search(vector, k)
    return embedded - began, time.perf_counter() - embedded


def measure_textbook(texts: list[str], questions: list[str], k: int, work: Path) -> dict[str, Any]:
    """What a newcomer writes: HuggingFaceEmbeddings + Chroma + similarity_search, same k."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings

    from app.embeddings import model_dir

    began = time.perf_counter()
    embedder = HuggingFaceEmbeddings(
        model_name=str(model_dir()), encode_kwargs={"normalize_embeddings": True}
    )
    store = Chroma.from_texts(texts, embedder, persist_directory=str(work))
    build = time.perf_counter() - began
    for q in warm_up(questions):
        store.similarity_search(q, k=k)
    samples = []
    for q in questions:
        began = time.perf_counter()
        store.similarity_search(q, k=k)
        samples.append(time.perf_counter() - began)
    return {**percentiles(samples), "build_s": round(build, 3)}


def synthetic_corpus(text: str, copies: int) -> list[str]:
    """`copies` versions of a Markdown article, each with its own headings and word choices."""
    out = []
    for n in range(1, copies + 1):
        version = re.sub(
            r"^(#{1,6} .+?)\s*$", rf"\1 (edition {n})", text, flags=re.M
        )  # every heading path differs, so every chunk does
        version = re.sub(r'^title: "(.*)"$', rf'title: "\1 (edition {n})"', version, flags=re.M)
        for word, choices in SWAPS.items():
            options = [word, *choices]
            pick = options[(n + len(word)) % len(options)]
            version = re.sub(rf"\b{word}\b", pick, version)
            version = re.sub(rf"\b{word.capitalize()}\b", pick.capitalize(), version)
        out.append(version)
    return out


def measure_index(
    settings: Settings, embeddings: Embeddings, env: dict[str, str]
) -> dict[str, Any]:
    """A full build of the corpus, then a re-index with nothing changed (in process and CLI)."""
    from app import index

    full = index.sync(settings, embeddings)
    again = [index.sync(settings, embeddings).seconds for _ in range(3)]
    began = time.perf_counter()
    subprocess.run(
        [*bench_http.advisor_command(), "index"], env=env, check=True, capture_output=True
    )
    return {
        "chunks": full.added,
        "full_s": round(full.seconds, 3),
        "full_chunks_per_s": round(full.added / full.seconds, 1),
        "nochange_s": round(sorted(again)[1], 3),
        "nochange_cli_s": round(time.perf_counter() - began, 3),
    }


def measure_synthetic(
    settings: Settings, embeddings: Embeddings, source: Path, scale: int
) -> dict[str, Any]:
    """A full build of `source` made `scale` times larger, into `settings`' own directories."""
    from app import index

    for path in sorted(p for p in source.rglob("*") if p.suffix in (".md", ".txt")):
        for n, version in enumerate(synthetic_corpus(path.read_text(encoding="utf-8"), scale)):
            name = f"{path.stem}-{n + 1:03d}{path.suffix}"
            (settings.corpus_dir / name).write_text(version, encoding="utf-8")
    chunks = index.current_chunks(settings)
    tokens = count_tokens(embeddings, [c.embed_text for c in chunks])
    report = index.sync(settings, embeddings)
    return {
        "scale": scale,
        "chunks": report.added,
        "seconds": round(report.seconds, 2),
        "chunks_per_s": round(report.added / report.seconds, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / report.seconds) if tokens else None,
    }


def count_tokens(embeddings: Embeddings, texts: list[str]) -> int | None:
    """Tokens the model sees for `texts` (after truncation); None without a tokenizer."""
    tokenizer = getattr(embeddings, "tokenizer", None)
    if tokenizer is None:
        return None
    return sum(sum(e.attention_mask) for e in tokenizer.encode_batch(texts))


def cli_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run every measurement, write the JSON and Markdown results, print the targets."""
    plan = QUICK if args.quick else FULL
    out = Path(args.out or DEFAULT_OUT)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": bool(args.quick),
        "machine": machine(),
        "questions": plan.questions,
    }
    with tempfile.TemporaryDirectory(prefix="advisor-bench-") as tmp:
        _run(plan, settings, Path(tmp), results)
    results["load_after"] = machine()["load_average"]
    results["seconds"] = round(time.perf_counter() - began, 1)
    results["targets"] = verdicts(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report = markdown(results)
    out.with_suffix(".md").write_text(report, encoding="utf-8")
    print(report.split("## Latency")[0].rstrip())
    print(f"\nWrote {out} and {out.with_suffix('.md')}.")
    return 0


def _run(plan: Plan, settings: Settings, tmp: Path, results: dict[str, Any]) -> None:
    from app.embeddings import load_embeddings
    from app.runtime import build_advisor

    loads = results.setdefault("load_by_step", [])

    def _step(text: str) -> None:  # the machine is shared: say how busy it was at each step
        loads.append([text, round(os.getloadavg()[0], 2)])
        print(f"bench: {text}", file=sys.stderr, flush=True)

    ws = _workspace(settings, tmp / "main")
    env = bench_http.child_env(
        {
            "ADVISOR_CORPUS_DIR": str(ws.corpus_dir),
            "ADVISOR_INDEX_DIR": str(ws.index_dir),
            "ADVISOR_DATA_DIR": str(ws.data_dir),
            "ADVISOR_EMBEDDER": ws.embedder,
            "ADVISOR_K": str(ws.k),
            "ADVISOR_LLM": "",
            "ADVISOR_RATE_LIMIT_PER_MINUTE": "0",  # a load test must not be throttled
        }
    )
    embeddings = load_embeddings(ws.embedder, ws.index_dir)
    _step("index: full build and no-change re-index of the corpus")
    results["index"] = measure_index(ws, embeddings, env)
    advisor = build_advisor(ws, embeddings=embeddings, refresh=False, quiet=True)
    questions = bench_questions(plan.questions)
    _step(f"latency: floor and ask over {len(questions)} questions")
    results.update(measure_latency(advisor, questions, ws.k))
    _step("latency: the textbook LangChain RAG")
    texts = [c.text for c in advisor.kb.chunks]
    results["textbook"] = measure_textbook(texts, questions, ws.k, tmp / "textbook")
    _step(f"cold start: {plan.cold_runs} × advisor ask, {plan.serve_runs} × advisor serve")
    results["cold_start"] = bench_http.measure_cold_start(env, COLD_QUESTION, plan.cold_runs)
    served = bench_http.measure_server(
        env, questions, warm_up(questions), plan.serve_runs, plan.http_seconds, tmp, _step
    )
    results["cold_start"]["serve_ready_s"] = served.pop("serve_ready_s")
    results.update(served)
    _step(f"index: full build of a corpus {plan.scale}× larger")
    synth = _workspace(settings, tmp / "synthetic", copy_corpus=False)
    results["index"]["synthetic"] = measure_synthetic(synth, embeddings, ws.corpus_dir, plan.scale)


def _workspace(settings: Settings, base: Path, copy_corpus: bool = True) -> Settings:
    """Settings on a private index (and corpus), with this machine's ONNX export copied in."""
    index_dir = base / "index"
    index_dir.mkdir(parents=True)
    for name in ("onnx", "model-verified.json"):  # no re-export, no re-hash at start-up
        source = settings.index_dir / name
        if source.is_dir():
            shutil.copytree(source, index_dir / name)
        elif source.is_file():
            shutil.copy2(source, index_dir / name)
    corpus = settings.corpus_dir.resolve()
    if not copy_corpus:
        corpus = base / "corpus"
        corpus.mkdir()
    return settings.model_copy(
        update={
            "corpus_dir": corpus,
            "index_dir": index_dir,
            "data_dir": base / "data",
            "chroma_host": None,
            "llm": None,
        }
    )
