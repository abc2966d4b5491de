"""Hybrid retrieval over the real index: paraphrased use cases find their decision-matrix row."""

import json
import shutil
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings

from app import cli, index
from app.chunking import Chunk
from app.config import Settings, get_settings
from app.embeddings import onnx_path
from app.retrieval import RRF_K, HybridRetriever

# Each decision-matrix row, asked about in words that are not the row's own.
PARAPHRASES = {
    "rest-api-standard-crud": (
        "a plain JSON API over a Postgres table with create, update and delete"
    ),
    "real-time-apps-chat-gaming": "live multiplayer leaderboard with instant updates",
    "ml-model-serving": (
        "expose a trained fraud-detection classifier so other services can get predictions"
    ),
    "data-pipelines-etl": "extract, transform and load sales data into a warehouse",
    "microservices": "split a monolith into lots of tiny services that boot quickly",
    "full-stack-same-language": (
        "avoid switching languages between the React client and the server"
    ),
    "background-jobs-data-heavy": "scheduled workers that aggregate big tables of numbers",
    "graphql-api": "a query language API with a typed schema and mutations",
}


@pytest.fixture(scope="module")
def retriever(kb_settings: Settings, embeddings: Embeddings) -> HybridRetriever:
    return HybridRetriever(index.load(kb_settings, embeddings), embeddings)


def row_key(chunk: Chunk) -> str | None:
    key = chunk.metadata.get("row_key")
    return str(key) if key is not None else None


def test_paraphrases_do_not_reuse_the_rows_wording(retriever: HybridRetriever) -> None:
    rows = {c.metadata["row_key"]: c for c in retriever.kb.chunks if c.kind == "row"}
    assert set(PARAPHRASES) <= set(rows)
    for key, query in PARAPHRASES.items():
        use_case = rows[key].cells["Use Case"].lower()
        assert use_case not in query.lower(), query


@pytest.mark.parametrize("key", list(PARAPHRASES))
def test_paraphrased_use_case_ranks_its_row_in_top_3(retriever: HybridRetriever, key: str) -> None:
    query = PARAPHRASES[key]
    hits = retriever.retrieve(retriever.embed(query), 5)
    top3 = [row_key(h.chunk) for h in hits[:3]]
    assert key in top3, f"{query!r} → {[h.chunk.location for h in hits]}"
    hit = hits[top3.index(key)]
    assert hit.chunk.kind == "row"
    assert hit.chunk.metadata["table"] == "Use case decision matrix"
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_finds_a_rare_exact_word(retriever: HybridRetriever) -> None:
    query = retriever.embed("Is Dramatiq a good choice?")
    lexical = retriever.lexical_scores(query.text)
    matched = {retriever.kb.chunks[i].location for i in range(len(lexical)) if lexical[i] > 0}
    assert "Ecosystem Comparison#row:job-queues" in matched
    hits = retriever.retrieve(query, 3)
    assert hits[0].chunk.location == "Ecosystem Comparison#row:job-queues"
    assert "Dramatiq" in hits[0].chunk.text


def test_bm25_contributes_to_the_fused_ranking(
    retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = retriever.embed("Dramatiq")
    lexical = retriever.lexical_scores(query.text)
    with_word = {c.id for c, s in zip(retriever.kb.chunks, lexical, strict=True) if s > 0}
    assert with_word == {c.id for c in retriever.kb.chunks if "Dramatiq" in c.text}
    hits = retriever.retrieve(query, 3)
    assert hits[0].chunk.location == "Ecosystem Comparison#row:job-queues"
    assert hits[0].score == pytest.approx(2 / (RRF_K + 1))  # first in both rankings
    # The whole ecosystem table only makes the top 3 because BM25 also ranks it.
    assert any(h.chunk.location == "Ecosystem Comparison#table0" for h in hits)
    dense_top3 = [c.location for c, _ in retriever.kb.dense_search(query.vector.tolist(), 3)]
    assert "Ecosystem Comparison#table0" not in dense_top3

    # With dense search switched off, BM25 alone still puts the row first.
    monkeypatch.setattr(retriever.kb, "dense_search", lambda vector, k: [])
    lexical_only = retriever.retrieve(query, 3)
    assert lexical_only[0].chunk.location == "Ecosystem Comparison#row:job-queues"
    assert {h.chunk.id for h in lexical_only} == with_word


def test_search_cli_json_parses(
    kb_settings: Settings,
    embeddings: Embeddings,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    target = onnx_path(kb_settings.index_dir)
    if not target.is_file():  # reuse the session's ONNX export instead of exporting again
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(onnx_path(model_cache), target)
    monkeypatch.setenv("ADVISOR_CORPUS_DIR", str(kb_settings.corpus_dir))
    monkeypatch.setenv("ADVISOR_INDEX_DIR", str(kb_settings.index_dir))
    monkeypatch.setenv("ADVISOR_DATA_DIR", str(kb_settings.data_dir))
    get_settings.cache_clear()
    assert cli.main(["search", "live multiplayer leaderboard with instant updates", "--json"]) == 0
    captured = capsys.readouterr()
    hits = json.loads(captured.out)
    assert isinstance(hits, list) and len(hits) == kb_settings.k
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    for hit in hits:
        assert set(hit) == {"rank", "chunk_id", "score", "similarity", "section", "source", "text"}
        assert hit["source"] == "node-vs-python-2026.md"
    assert hits[0]["text"].startswith("Use case decision matrix — Use case: Real-time apps")

    get_settings.cache_clear()
    assert cli.main(["search", "Dramatiq", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and "Dramatiq" in hits[0]["text"]
