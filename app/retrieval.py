"""Hybrid retrieval: dense search in Chroma plus BM25 over the same chunks, fused by rank."""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from langchain_core.embeddings import Embeddings

from app.chunking import Chunk
from app.embeddings import model_dir
from app.errors import ModelError
from app.index import KnowledgeBase
from app.query import CONCEPTS, Normalizer

RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al., 2009)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and its cosine similarity to the query."""

    chunk: Chunk
    score: float
    similarity: float
    rank: int


@dataclass(frozen=True)
class Query:
    """A standalone question cleaned for search, its embedding and similarity to every chunk."""

    text: str  # injected instructions dropped, typos repaired
    vector: np.ndarray
    similarities: np.ndarray  # aligned with KnowledgeBase.chunks
    concepts: dict[str, int] = field(default_factory=dict)
    original: str = ""
    injected: tuple[str, ...] = ()
    coverage: float = 1.0
    only_instructions: bool = False


@lru_cache(maxsize=1)
def english_words() -> set[str]:
    """Whole words of the embedding model's WordPiece vocabulary: real words, not typos."""
    try:
        lines = (model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, ModelError):
        return set()
    return {w for w in lines if w.isalpha() and len(w) > 2}


class HybridRetriever:
    """Dense + BM25 retrieval over one loaded knowledge base; BM25 state is built once."""

    def __init__(self, kb: KnowledgeBase, embeddings: Embeddings, k: int = 5) -> None:
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.kb = kb
        self.embeddings = embeddings
        self.k = k
        self.tokenizer = Tokenizer(stopwords="english")
        ids = self.tokenizer.tokenize(
            [c.embed_text for c in kb.chunks], show_progress=False, return_as="ids"
        )
        self.bm25 = bm25s.BM25()
        self.bm25.index(ids, show_progress=False)
        self.position = {c.id: n for n, c in enumerate(kb.chunks)}
        self.normalizer = Normalizer(set(self.tokenizer.get_vocab_dict()), english_words())
        # One vector per topic concept: a question that names a topic ("live leaderboard") also
        # ranks the chunks by how close they are to the topic's own words ("real-time apps…").
        names = list(CONCEPTS)
        vectors = np.asarray(
            embeddings.embed_documents([CONCEPTS[n][1] for n in names]), dtype=np.float32
        )
        self.concept_vectors = dict(zip(names, vectors, strict=True))
        self.concept_sims = {n: kb.vectors @ v for n, v in self.concept_vectors.items()}

    def embed(self, text: str) -> Query:
        """Clean and embed a question once; every later stage reuses the result."""
        clean = self.normalizer.clean(text)
        vector = np.asarray(self.embeddings.embed_query(clean.search_text), dtype=np.float32)
        return Query(
            clean.text,
            vector,
            self.kb.vectors @ vector,
            clean.concepts,
            text,
            clean.injected,
            clean.coverage,
            clean.only_instructions,
        )

    def lexical_scores(self, text: str) -> np.ndarray:
        """BM25 score of every chunk for `text` (zeros when no word is known)."""
        vocab = self.tokenizer.get_vocab_dict()
        words = self.tokenizer.tokenize(
            [text], update_vocab=False, return_as="string", show_progress=False
        )[0]
        known = [w for w in words if w in vocab]
        if not known:
            return np.zeros(len(self.kb.chunks), dtype=np.float32)
        return np.asarray(self.bm25.get_scores([vocab[w] for w in known]), dtype=np.float32)

    def _topic_ranking(self, query: Query, depth: int) -> list[str]:
        """Chunks ranked by closeness to the topics the question names (none: empty)."""
        if not query.concepts or not len(self.kb.chunks):
            return []
        top = max(query.concepts.values())
        score = np.max(
            [self.concept_sims[n] * (c / top) for n, c in query.concepts.items()], axis=0
        )
        return [self.kb.chunks[i].id for i in np.argsort(-score)[:depth]]

    def retrieve(self, query: Query, k: int | None = None) -> list[Hit]:
        """Top-k chunks by reciprocal-rank fusion of the dense, BM25 and topic rankings."""
        k = k or self.k
        depth = max(4 * k, 20)
        dense = [c.id for c, _ in self.kb.dense_search(query.vector.tolist(), depth)]
        lexical = self.lexical_scores(query.text)
        bm25_rank = [self.kb.chunks[i].id for i in np.argsort(-lexical)[:depth] if lexical[i] > 0]
        fused: dict[str, float] = {}
        for ranking in (dense, bm25_rank, self._topic_ranking(query, depth)):
            for rank, chunk_id in enumerate(ranking):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [
            Hit(
                chunk=self.kb.by_id[chunk_id],
                score=score,
                similarity=float(query.similarities[self.position[chunk_id]]),
                rank=n + 1,
            )
            for n, (chunk_id, score) in enumerate(best)
        ]
