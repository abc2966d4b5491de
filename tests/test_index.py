"""Indexing: incremental sync, atomic switch-over, staleness, corruption and the `index` CLI."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_settings
from langchain_core.embeddings import Embeddings

from app import cli, index, store
from app.config import Settings, get_settings
from app.embeddings import onnx_path
from app.errors import IndexUnavailable

# Real vectors, remembered by text across this module: each test builds its own index but the
# model only runs on text it has not seen (embedding is by far the slowest part of a build).
_VECTORS: dict[str, list[float]] = {}


class Remembering(Embeddings):
    """The session's ONNX embeddings, computed once per distinct text."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        missing = list(dict.fromkeys(t for t in texts if t not in _VECTORS))
        if missing:
            _VECTORS.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return [_VECTORS[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class FailsAfterFirstCall(Remembering):
    """Embeds the first batch, then fails: a build that dies midway."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.calls >= 1:
            raise RuntimeError("embedding backend crashed")
        return super().embed_documents(texts)


@pytest.fixture
def emb(embeddings: Embeddings) -> Remembering:
    return Remembering(embeddings)


def chunk_count(settings: Settings) -> int:
    return len(index.current_chunks(settings))


def live_collection(settings: Settings) -> str:
    manifest = store.read_manifest(store.open_client(settings), settings)
    assert manifest is not None
    return str(manifest["collection"])


def test_first_sync_adds_everything_second_embeds_nothing(
    fresh_settings: Settings, emb: Remembering
) -> None:
    n = chunk_count(fresh_settings)
    assert n >= 20
    first = index.sync(fresh_settings, emb)
    assert (first.added, first.updated, first.removed, first.unchanged) == (n, 0, 0, 0)
    assert first.embedded == n
    assert first.rebuilt and first.reason == "no index yet"
    assert f"{n} added, 0 updated, 0 removed, 0 unchanged" in first.summary()

    calls = emb.calls
    second = index.sync(fresh_settings, emb)
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 0, 0, n)
    assert second.embedded == 0 and not second.rebuilt
    assert emb.calls == calls  # the model was not asked for anything
    assert second.kb_version == first.kb_version
    assert second.summary().startswith("Index up to date")

    kb = index.load(fresh_settings, emb)
    assert len(kb.chunks) == n and kb.vectors.shape == (n, 384)
    assert kb.kb_version == first.kb_version
    assert {c.id for c in kb.chunks} == {c.id for c in index.current_chunks(fresh_settings)}
    for chunk, vector in zip(kb.chunks, kb.vectors, strict=True):  # vectors line up with chunks
        assert np.allclose(vector, _VECTORS[chunk.embed_text], atol=1e-6)


def test_editing_one_paragraph_updates_one_chunk(
    fresh_settings: Settings, emb: Remembering
) -> None:
    index.sync(fresh_settings, emb)
    n = chunk_count(fresh_settings)
    article = fresh_settings.corpus_dir / "node-vs-python-2026.md"
    text = article.read_text()
    assert text.count("That framing misses the point.") == 1
    article.write_text(text.replace("That framing misses the point.", "That framing is wrong."))
    report = index.sync(fresh_settings, emb)
    assert (report.added, report.updated, report.removed) == (0, 1, 0)
    assert report.unchanged == n - 1
    assert report.embedded == 1 and not report.rebuilt
    kb = index.load(fresh_settings, emb)
    (edited,) = [c for c in kb.chunks if c.section == "The Real Question"]
    assert "That framing is wrong." in edited.text
    assert kb.kb_version == report.kb_version


def test_deleting_a_file_removes_its_chunks(fresh_settings: Settings, emb: Remembering) -> None:
    extra = fresh_settings.corpus_dir / "extra.md"
    extra.write_text(
        "---\ntitle: Extra\n---\n\n# Extra\n\n## Deno\n\nDeno runs TypeScript directly.\n\n"
        "## Bun\n\nBun bundles a test runner.\n"
    )
    index.sync(fresh_settings, emb)
    extra_chunks = [c for c in index.current_chunks(fresh_settings) if c.source == "extra.md"]
    assert len(extra_chunks) == 2
    extra.unlink()
    report = index.sync(fresh_settings, emb)
    assert report.removed == len(extra_chunks)
    assert (report.added, report.updated, report.embedded) == (0, 0, 0)
    assert report.unchanged == chunk_count(fresh_settings)
    kb = index.load(fresh_settings, emb)
    assert not [c for c in kb.chunks if c.source == "extra.md"]


def test_adding_a_txt_file_adds_its_chunks(fresh_settings: Settings, emb: Remembering) -> None:
    index.sync(fresh_settings, emb)
    n = chunk_count(fresh_settings)
    (fresh_settings.corpus_dir / "notes").mkdir()
    (fresh_settings.corpus_dir / "notes" / "team.txt").write_text(
        "Team notes\n\nOur team knows Go and Python well.\n\n" + "Long paragraph. " * 100 + "\n"
    )
    added = [c for c in index.current_chunks(fresh_settings) if c.source == "notes/team.txt"]
    assert len(added) == 2  # the long paragraph does not fit with the first two
    report = index.sync(fresh_settings, emb)
    assert (report.added, report.updated, report.removed) == (2, 0, 0)
    assert report.unchanged == n and report.embedded == 2
    kb = index.load(fresh_settings, emb)
    assert {c.id for c in added} <= set(kb.by_id)


def test_failed_build_leaves_the_previous_index_serving(
    fresh_settings: Settings, emb: Remembering
) -> None:
    index.sync(fresh_settings, emb)
    before = index.load(fresh_settings, emb)
    live = before.collection
    # 70 table rows: more than one embedding batch, so the failure comes midway.
    rows = "\n".join(f"| Tool {i} | Node.js | reason {i} |" for i in range(70))
    (fresh_settings.corpus_dir / "big.md").write_text(
        f"# Big\n\n## Tools\n\n| Tool | Winner | Reason |\n| --- | --- | --- |\n{rows}\n"
    )
    assert chunk_count(fresh_settings) - len(before.chunks) > 64

    failing = FailsAfterFirstCall(emb.inner)
    with pytest.raises(RuntimeError, match="crashed"):
        index.sync(fresh_settings, failing)
    assert failing.calls == 1  # one batch went through before the crash

    client = store.open_client(fresh_settings)
    leftovers = store.data_collections(client, fresh_settings)
    assert live in leftovers and len(leftovers) == 2  # the half-built one is still there
    assert live_collection(fresh_settings) == live

    after = index.load(fresh_settings, emb)
    assert after.kb_version == before.kb_version
    assert after.collection == live
    assert [c.id for c in after.chunks] == [c.id for c in before.chunks]
    hits = after.dense_search(emb.embed_query("Node.js for a real-time chat app"), 3)
    assert len(hits) == 3
    assert hits[0][0].metadata.get("row_key") in {
        "real-time-apps-chat-gaming",
        "real-time-websockets",
    }
    assert index.staleness(fresh_settings) == "the corpus changed"

    report = index.sync(fresh_settings, emb)
    assert report.added == chunk_count(fresh_settings) - len(before.chunks)
    assert report.unchanged == len(before.chunks) and report.embedded == report.added
    new_live = live_collection(fresh_settings)
    assert new_live != live
    # The half-built leftover is gone; the previous index stays one generation for replicas
    # that have not seen the switch yet, and goes with the next one.
    kept = store.data_collections(store.open_client(fresh_settings), fresh_settings)
    assert sorted(kept) == sorted([live, new_live])
    assert index.load(fresh_settings, emb).kb_version == report.kb_version != before.kb_version


def test_previous_index_answers_until_the_next_switch(
    fresh_settings: Settings, emb: Remembering
) -> None:
    index.sync(fresh_settings, emb)
    first = index.load(fresh_settings, emb)  # a replica that has not looked again since
    query = emb.embed_query("Node.js for a real-time chat app")
    extra = fresh_settings.corpus_dir / "extra.md"
    extra.write_text("# Extra\n\n## Deno\n\nDeno runs TypeScript directly.\n")
    index.sync(fresh_settings, emb)
    assert first.dense_search(query, 3)  # kept one generation: still answers
    assert first.failure is None

    extra.write_text("# Extra\n\n## Bun\n\nBun bundles a test runner.\n")
    index.sync(fresh_settings, emb)
    with pytest.raises(IndexUnavailable, match="replaced or deleted") as caught:
        first.dense_search(query, 3)
    assert "\n" not in str(caught.value)
    assert first.failure == str(caught.value)  # what tells a server to reload
    assert len(store.data_collections(store.open_client(fresh_settings), fresh_settings)) == 2


def test_staleness_says_why(
    fresh_settings: Settings, emb: Remembering, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = index.staleness(fresh_settings)
    assert missing is not None and "no index" in missing.lower()
    assert "advisor index" in missing
    index.sync(fresh_settings, emb)
    assert index.staleness(fresh_settings) is None
    article = fresh_settings.corpus_dir / "node-vs-python-2026.md"
    article.write_text(article.read_text().replace("Python wins decisively.", "Python wins."))
    assert index.staleness(fresh_settings) == "the corpus changed"
    index.sync(fresh_settings, emb)
    assert index.staleness(fresh_settings) is None
    monkeypatch.setattr(index, "CHUNKER_VERSION", "test-next")
    assert index.staleness(fresh_settings) == "built with another chunker version"
    report = index.sync(fresh_settings, emb)
    assert report.rebuilt and report.reason == "another chunker version"
    assert index.staleness(fresh_settings) is None


def test_corrupt_index_is_reported_then_moved_aside_on_rebuild(
    fresh_settings: Settings, emb: Remembering
) -> None:
    n = chunk_count(fresh_settings)
    index.sync(fresh_settings, emb)
    sqlite = fresh_settings.index_dir / "chroma" / "chroma.sqlite3"
    garbage = b"this is not a sqlite database " * 512
    sqlite.write_bytes(garbage)

    with pytest.raises(IndexUnavailable) as caught:
        index.load(fresh_settings, emb)
    message = str(caught.value)
    assert "\n" not in message
    assert "advisor index --rebuild" in message
    with pytest.raises(IndexUnavailable, match="advisor index --rebuild"):
        index.sync(fresh_settings, emb)  # a plain sync refuses to touch it
    stale = index.staleness(fresh_settings)
    assert stale is not None and "advisor index --rebuild" in stale

    report = index.sync(fresh_settings, emb, rebuild=True)
    assert report.rebuilt and report.reason == "asked for"
    assert report.added == n and report.embedded == n
    (aside,) = fresh_settings.index_dir.glob("chroma.corrupt-*")
    assert (aside / "chroma.sqlite3").read_bytes() == garbage  # kept, not deleted
    kb = index.load(fresh_settings, emb)
    assert len(kb.chunks) == n and kb.kb_version == report.kb_version
    assert index.staleness(fresh_settings) is None


# --- the `advisor index` command -----------------------------------------------------------


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embeddings: Embeddings, model_cache: Path
) -> Settings:
    """ADVISOR_* pointing at a private corpus and index; the ONNX export is reused."""
    settings = make_settings(tmp_path)
    target = onnx_path(settings.index_dir)
    target.parent.mkdir(parents=True)
    shutil.copy2(onnx_path(model_cache), target)  # skips a slow re-export in a new index dir
    monkeypatch.setenv("ADVISOR_CORPUS_DIR", str(settings.corpus_dir))
    monkeypatch.setenv("ADVISOR_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("ADVISOR_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    return settings


def test_cli_index_prints_the_summary(cli_env: Settings, capsys: pytest.CaptureFixture) -> None:
    n = chunk_count(cli_env)
    assert cli.main(["index"]) == 0
    out = capsys.readouterr().out
    assert f"{n} added, 0 updated, 0 removed, 0 unchanged" in out
    assert (cli_env.index_dir / "chroma" / "chroma.sqlite3").is_file()

    get_settings.cache_clear()
    assert cli.main(["index"]) == 0
    out = capsys.readouterr().out
    assert f"0 added, 0 updated, 0 removed, {n} unchanged; 0 embedded" in out


def assert_one_line_error(capsys: pytest.CaptureFixture, *words: str) -> None:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err


@pytest.mark.parametrize("command", [["index"], ["chunks"]])
def test_cli_empty_corpus_is_one_line_error(
    cli_env: Settings, capsys: pytest.CaptureFixture, command: list[str]
) -> None:
    shutil.rmtree(cli_env.corpus_dir)
    cli_env.corpus_dir.mkdir()
    assert cli.main(command) == 2
    assert_one_line_error(capsys, str(cli_env.corpus_dir), "no .md or .txt files")


@pytest.mark.parametrize("command", [["index"], ["chunks"]])
def test_cli_binary_file_is_one_line_error(
    cli_env: Settings, capsys: pytest.CaptureFixture, command: list[str]
) -> None:
    (cli_env.corpus_dir / "logo.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert cli.main(command) == 2
    assert_one_line_error(capsys, "logo.md", "binary")
    assert not (cli_env.index_dir / "chroma").exists()  # nothing was built


def test_foreign_chroma_directory_is_reported_then_built_over(
    fresh_settings: Settings, emb: Remembering
) -> None:
    import chromadb

    # Someone else's Chroma database where ours should be: no manifest, other collections.
    path = store.chroma_path(fresh_settings)
    other = chromadb.PersistentClient(path=str(path))
    other.create_collection("their-notes").add(ids=["x"], embeddings=[[0.1, 0.2]], documents=["x"])
    with pytest.raises(IndexUnavailable, match="holds no Stack Advisor index: run `advisor index`"):
        index.load(fresh_settings, emb)
    assert index.staleness(fresh_settings) == "no index yet"
    report = index.sync(fresh_settings, emb)
    assert report.rebuilt and report.added == chunk_count(fresh_settings)
    assert index.load(fresh_settings, emb).chunks
    # Their collection is left alone: we only ever delete our own.
    names = [c if isinstance(c, str) else c.name for c in other.list_collections()]
    assert "their-notes" in names
