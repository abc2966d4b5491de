"""Property-based fuzzing of the corpus loader and chunker: good chunks or a `CorpusError`."""

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.chunking import Chunk, chunk_corpus, chunk_document, slug
from app.corpus import Document, load_corpus
from app.errors import CorpusError

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Line breaks Python's str.splitlines() honours but Markdown does not.
ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
WORD = re.compile(r"\w+")

words = st.text(
    st.characters(codec="utf-8", exclude_characters="\n\r&\x00"), min_size=1, max_size=12
)
plain_words = st.from_regex(r"[A-Za-z][A-Za-z0-9.+#/-]{0,10}", fullmatch=True)


def phrase(of: st.SearchStrategy[str] = words, most: int = 6) -> st.SearchStrategy[str]:
    return st.lists(of, min_size=1, max_size=most).map(" ".join)


# First cells that slug alike ("C++" and "C#" are both "c"), and header names that repeat.
CLASHING = st.sampled_from(["C++", "C#", "c", "Go", "go!", "ETL", "etl"])
HEADERS = st.one_of(phrase(plain_words, 3), st.sampled_from(["Use Case", "use case", "Winner"]))


@st.composite
def tables(draw: st.DrawFn) -> str:
    """A Markdown table, sometimes with ragged rows, empty or duplicate cells, escaped pipes."""
    width = draw(st.integers(1, 4))
    header = draw(st.lists(HEADERS, min_size=width, max_size=width))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * width]
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.sampled_from([width, width, width, width - 1, width + 1, 0]))
        cell = st.one_of(phrase(), CLASHING, st.just(""), st.just("a \\| b"))
        cells = draw(st.lists(cell, min_size=n, max_size=n))
        edge = draw(st.sampled_from(["| {} |", "{}", "| {}", "{} |"]))
        lines.append(edge.format(" | ".join(cells)))
    return "\n".join(lines)


blocks = st.one_of(
    phrase(),
    phrase().map(lambda t: "#" * 1 + " " + t),
    st.tuples(st.integers(1, 8), phrase()).map(lambda p: "#" * p[0] + " " + p[1]),
    st.lists(phrase(), min_size=1, max_size=5).map(lambda xs: "\n".join(f"- {x}" for x in xs)),
    st.tuples(st.integers(1, 40), phrase()).map(lambda p: "  " * p[0] + "- " + p[1]),
    st.tuples(st.integers(1, 60), phrase()).map(lambda p: ">" * p[0] + " " + p[1]),
    st.tuples(st.integers(1, 60), phrase()).map(lambda p: "1. " * p[0] + p[1]),
    phrase().map(lambda t: f"```\n{t}\n```"),
    phrase().map(lambda t: f"    {t}"),
    phrase().map(lambda t: f"**{t}** _{t}_ `{t}` [{t}](http://x.example) ![{t}](y.png) <b>{t}</b>"),
    tables(),
    st.tuples(st.sampled_from(ODD_BREAKS), tables()).map(lambda p: f"odd{p[0]}break\n\n{p[1]}"),
    st.just("x" * 5000),
    st.just("---"),
    st.just(""),
)
markdown_bodies = st.lists(blocks, max_size=12).map("\n\n".join)

front_matter = st.one_of(
    st.just(""),
    st.just("---\ntitle: A title\n---\n"),
    st.just("---\n---\n"),
    st.just("---\ntitle: [unclosed\n---\n"),
    st.just("---\n- a list\n---\n"),
    st.just("---\ntitle: never closed\n"),
    st.just("---\na: &a [1, 2]\nb: [*a, *a]\n---\n"),
    st.just("---\ntitle: {nested: {deep: [1, 2]}}\n---\n"),
    st.just("---\n" + "[" * 2000 + "]" * 2000 + "\n---\n"),
    st.text(max_size=80).map(lambda t: f"---\n{t}\n---\n"),
)


def check_chunks(chunks: list[Chunk], sources: dict[str, str]) -> None:
    """The invariants every chunk list holds, whatever the input."""
    assert len({c.id for c in chunks}) == len(chunks), "duplicate chunk ids"
    assert len({(c.source, c.location) for c in chunks}) == len(chunks), "duplicate locations"
    table = ""
    for c in chunks:
        assert c.text.strip(), c
        assert re.fullmatch(r"[0-9a-f]{16}", c.id)
        assert c.source in sources
        assert c.metadata["source"] == c.source and c.metadata["kind"] == c.kind
        assert c.metadata["location"] == c.location and c.location.startswith(c.section + "#")
        assert all(isinstance(v, str | int | float | bool) for v in c.metadata.values())
        if c.kind == "table":
            table = c.text.casefold()
        if c.kind == "row":
            cells = json.loads(str(c.metadata["cells"]))
            assert isinstance(cells, dict) and cells and all(cells.values())
            assert c.cells == cells
            first = next(iter(cells.values()))
            assert c.metadata["row_key"] == slug(first)
            assert c.text.startswith(f"{c.metadata['table']} — ")
            # Its table's chunk (just before it) holds every word of every cell.
            words = [w for v in [*cells, *cells.values()] for w in WORD.findall(v.casefold())]
            assert all(w in table for w in words), (words, table)


def load_one(raw: bytes, name: str = "doc.md") -> tuple[list[Chunk], Document] | str:
    """Chunks of one file written with `raw`, or the `CorpusError` message it raises."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(raw)
        try:
            docs = load_corpus(Path(tmp))
            return chunk_corpus(docs), docs[0]
        except CorpusError as exc:
            return str(exc)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["doc.md", "doc.txt", "sub.dir/NOTES.MD"]))
@example(b"\xef\xbb\xbf# BOM\n\ntext", "doc.md")
@example(b"caf\xe9", "doc.md")
@example(b"a\x00b", "doc.txt")
@example(b"\xff\xfe\x00\x00", "doc.md")
def test_random_bytes_give_chunks_or_a_corpus_error(raw: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        try:
            chunks = chunk_corpus(load_corpus(Path(tmp)))
        except CorpusError as exc:
            message = str(exc)
            assert name in message and "\n" not in message
            return
    check_chunks(chunks, {name: raw.decode("utf-8-sig")})


@FUZZ
@given(front_matter, markdown_bodies)
@example("", "| Use Case |\n|---|\n| 0 |")
@example("", "odd\x0cbreak\n\n| A | B |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |")
@example("", "| A | B |\n|---|---|\n| C++ | 1 |\n| C# | 2 |\n| C++ | 1 |")
@example("", "| A | A |\n|---|---|\n| 1 | 2 |")
@example("---\n---\n", "# Empty front matter")
@example("---\na: &x [1]\nb: *x\n---\n", "# Alias")
def test_markdown_gives_chunks_or_a_corpus_error(head: str, body: str) -> None:
    result = load_one((head + body).encode())
    if isinstance(result, str):
        assert "doc.md" in result and "\n" not in result
        return
    chunks, doc = result
    check_chunks(chunks, {"doc.md": doc.body})
    # Chunk text is parsed Markdown: every word of it is a word of the source.
    source = doc.body.casefold()
    for c in chunks:
        text = c.text
        if c.kind == "row" and c.metadata["table"] == "Table":  # a table under no heading
            text = text.removeprefix("Table — ")
        if c.kind != "table":
            missing = [w for w in WORD.findall(text.casefold()) if w not in source]
            assert not missing, (missing, c)
        else:
            assert c.text in doc.body
    again = chunk_document(doc)
    assert [(c.id, c.hash) for c in again] == [(c.id, c.hash) for c in chunks]


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_plain_text(text: str) -> None:
    doc = Document(source="notes.txt", title="t", body=text, kind="text")
    chunks = chunk_document(doc)
    check_chunks(chunks, {"notes.txt": text})
    for c in chunks:
        assert set(c.text.split()) <= set(text.split())


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_markdown(text: str) -> None:
    doc = Document(source="doc.md", title="t", body=text, kind="markdown")
    try:
        chunks = chunk_document(doc)
    except CorpusError as exc:
        assert "doc.md" in str(exc)
        return
    check_chunks(chunks, {"doc.md": text})


def test_a_huge_line_is_one_chunk() -> None:
    line = "word " * 200_000
    result = load_one(f"# Big\n\n{line}\n".encode())
    assert not isinstance(result, str)
    (chunk,) = result[0]
    assert chunk.text == line.strip()
