"""Builds and loads the index: incremental, and switched over only when a build completes."""

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from app import store
from app.chunking import CHUNKER_VERSION, Chunk, chunk_corpus
from app.config import Settings
from app.corpus import load_corpus
from app.embeddings import MODEL_NAME, MODEL_SHA256
from app.errors import IndexUnavailable

Progress = Callable[[int, int], None]


@dataclass
class IndexReport:
    """What an `advisor index` run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    rebuilt: bool = False
    reason: str = ""
    kb_version: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        how = f"rebuilt ({self.reason})" if self.rebuilt else "up to date"
        if not self.rebuilt and (self.added or self.updated or self.removed):
            how = "updated"
        return (
            f"Index {how}: {self.added} added, {self.updated} updated, {self.removed} removed, "
            f"{self.unchanged} unchanged; {self.embedded} embedded in {self.seconds:.2f}s "
            f"(kb {self.kb_version})."
        )


def chunk_key(chunk: Chunk) -> str:
    """Identity of a chunk across edits: where it is, not what it says."""
    return f"{chunk.source}::{chunk.location}"


def kb_version(model_sha: str, entries: dict[str, dict[str, str]]) -> str:
    """Fingerprint of model + chunker + every chunk's id and hash."""
    payload = json.dumps([model_sha, CHUNKER_VERSION, sorted(entries.items())], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def manifest_entries(chunks: list[Chunk]) -> dict[str, dict[str, str]]:
    """The manifest's per-chunk records: key → {id, hash}."""
    return {chunk_key(c): {"id": c.id, "hash": c.hash} for c in chunks}


def current_chunks(settings: Settings) -> list[Chunk]:
    """Chunks of the corpus as it is on disk now."""
    return chunk_corpus(load_corpus(settings.corpus_dir), settings.chunk_max_chars)


def staleness(settings: Settings, chunks: list[Chunk] | None = None) -> str | None:
    """Why the index must be (re)built, or None when it matches the corpus."""
    try:
        client = store.open_client(settings)
        manifest = store.read_manifest(client, settings)
    except IndexUnavailable as exc:
        return str(exc)
    if manifest is None:
        return "no index yet"
    if manifest.get("model_sha256") != MODEL_SHA256:
        return "built with another embedding model"
    if manifest.get("chunker_version") != CHUNKER_VERSION:
        return "built with another chunker version"
    entries = manifest_entries(chunks if chunks is not None else current_chunks(settings))
    return None if manifest.get("chunks") == entries else "the corpus changed"


def sync(
    settings: Settings,
    embeddings: Embeddings,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the index in line with the corpus, re-embedding only what changed."""
    started = time.perf_counter()
    chunks = current_chunks(settings)  # corpus errors surface before anything is touched
    entries = manifest_entries(chunks)
    try:
        client = store.open_client(settings, create=True)
        old = store.read_manifest(client, settings)
    except IndexUnavailable:
        if settings.chroma_host or not rebuild:
            raise
        store.quarantine(settings)
        client, old = store.open_client(settings, create=True), None

    report = IndexReport(kb_version=kb_version(MODEL_SHA256, entries))
    reason = _rebuild_reason(old, rebuild)
    old_entries: dict[str, dict[str, str]] = {} if reason else (old or {}).get("chunks", {})
    for key, entry in entries.items():
        before = old_entries.get(key)
        if before is None:
            report.added += 1
        elif before != entry:
            report.updated += 1
        else:
            report.unchanged += 1
    report.removed = len(set(old_entries) - set(entries))
    if reason:
        report.rebuilt, report.reason = True, reason
    elif not (report.added or report.updated or report.removed):
        report.seconds = time.perf_counter() - started
        return report

    reusable = {e["id"] for k, e in entries.items() if old_entries.get(k) == e}
    name = f"{settings.collection}-v{uuid.uuid4().hex[:12]}"
    target = client.create_collection(name, configuration={"hnsw": {"space": "cosine"}})
    vectors = _reuse_vectors(client, old, reusable) if old and not reason else {}
    todo = [c for c in chunks if c.id not in vectors]
    batch = 64
    for start in range(0, max(len(todo), 1), batch):
        part = todo[start : start + batch]
        if part:
            for c, v in zip(
                part, embeddings.embed_documents([c.embed_text for c in part]), strict=True
            ):
                vectors[c.id] = v
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    report.embedded = len(todo)
    _write(target, chunks, vectors, client.get_max_batch_size())
    store.write_manifest(
        client,
        settings,
        {
            "collection": name,
            "model": MODEL_NAME,
            "model_sha256": MODEL_SHA256,
            "chunker_version": CHUNKER_VERSION,
            "kb_version": report.kb_version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "chunks": entries,
        },
    )
    # The previous index stays one generation, so replicas that have not yet seen the new
    # manifest keep answering from it; older ones and half-built leftovers go.
    keep = {name, (old or {}).get("collection")}
    for stale in store.data_collections(client, settings):
        if stale not in keep:
            client.delete_collection(stale)
    report.seconds = time.perf_counter() - started
    return report


def _rebuild_reason(old: dict[str, Any] | None, rebuild: bool) -> str:
    if rebuild:
        return "asked for"
    if old is None:
        return "no index yet"
    if old.get("model_sha256") != MODEL_SHA256:
        return "another embedding model"
    if old.get("chunker_version") != CHUNKER_VERSION:
        return "another chunker version"
    return ""


def _reuse_vectors(client: Any, old: dict[str, Any], ids: set[str]) -> dict[str, list[float]]:
    if not ids:
        return {}
    try:
        got = client.get_collection(old["collection"]).get(ids=sorted(ids), include=["embeddings"])
    except Exception:
        return {}  # the old collection is gone: everything is embedded afresh
    return {i: list(map(float, v)) for i, v in zip(got["ids"], got["embeddings"], strict=True)}


def _write(target: Any, chunks: list[Chunk], vectors: dict[str, list[float]], limit: int) -> None:
    step = max(1, min(limit, 1000))
    for start in range(0, len(chunks), step):
        part = chunks[start : start + step]
        target.add(
            ids=[c.id for c in part],
            embeddings=[vectors[c.id] for c in part],
            documents=[c.text for c in part],
            metadatas=[{**c.metadata, "hash": c.hash} for c in part],
        )


@dataclass
class KnowledgeBase:
    """A loaded index: every chunk and its vector in memory, plus the Chroma store to search."""

    settings: Settings
    chunks: list[Chunk]
    vectors: np.ndarray
    kb_version: str
    collection: str
    vectorstore: Any
    by_id: dict[str, Chunk] = field(default_factory=dict)
    client: Any = None
    fingerprint: tuple[int, int, int, int] | None = None  # of the embedded database when loaded
    failure: str | None = None  # set when a search fails, so the server knows to reload

    def __post_init__(self) -> None:
        self.by_id = {c.id: c for c in self.chunks}

    def dense_search(self, vector: list[float], k: int) -> list[tuple[Chunk, float]]:
        """Nearest chunks by cosine similarity, through Chroma."""
        try:
            found = self.vectorstore.similarity_search_by_vector_with_relevance_scores(
                vector, k=min(k, len(self.chunks))
            )
        except Exception as exc:
            error = store.explain(self.settings, exc, "searching")
            self.failure = str(error)
            raise error from None
        return [
            (self.by_id[doc.id], 1.0 - float(distance))
            for doc, distance in found
            if doc.id in self.by_id
        ]


def load(settings: Settings, embeddings: Embeddings) -> KnowledgeBase:
    """Open the live index; `IndexUnavailable` with a fix when there is none."""
    from langchain_chroma import Chroma

    client = store.open_client(settings)
    # After opening (which may write), before reading: any later write shows as a change.
    fingerprint = store.fingerprint(settings)
    manifest = store.read_manifest(client, settings)
    if manifest is None:
        raise IndexUnavailable(
            f"The {store.describe(settings)} holds no Stack Advisor index: run `advisor index`."
        )
    name = manifest["collection"]
    try:
        got = client.get_collection(name).get(include=["documents", "metadatas", "embeddings"])
    except Exception as exc:
        raise store.explain(settings, exc, f"loading collection {name}") from None
    chunks = [
        Chunk(
            id=i,
            source=str(m["source"]),
            section=str(m["section"]),
            kind=m["kind"],
            location=str(m["location"]),
            text=d,
            metadata={k: v for k, v in m.items() if k != "hash"},
        )
        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    ]
    order = {e["id"]: n for n, e in enumerate(manifest["chunks"].values())}
    idx = sorted(range(len(chunks)), key=lambda n: order.get(chunks[n].id, len(order)))
    vectors = np.asarray(got["embeddings"], dtype=np.float32)[idx] if chunks else np.zeros((0, 384))
    try:
        vectorstore = Chroma(
            client=client,
            collection_name=name,
            embedding_function=embeddings,
            create_collection_if_not_exists=False,
        )
    except Exception as exc:
        raise store.explain(settings, exc, f"opening collection {name}") from None
    return KnowledgeBase(
        settings=settings,
        chunks=[chunks[n] for n in idx],
        vectors=vectors,
        kb_version=str(manifest["kb_version"]),
        collection=name,
        vectorstore=vectorstore,
        client=client,
        fingerprint=fingerprint,
    )
