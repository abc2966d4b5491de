"""Loading the corpus: front matter, nested files, and one-line errors that name the bad file."""

import datetime
import hashlib
import os
from pathlib import Path

import pytest

from app.chunking import chunk_corpus
from app.corpus import Document, load_corpus
from app.errors import CorpusError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
ARTICLE = "node-vs-python-2026.md"


def corpus_error(corpus_dir: Path) -> str:
    """The message of the `CorpusError` that loading `corpus_dir` raises (checked one line)."""
    with pytest.raises(CorpusError) as caught:
        load_corpus(corpus_dir)
    message = str(caught.value)
    assert message and "\n" not in message, message
    return message


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every path under `directory`: a file's sha256 and mtime, "dir" for a directory."""
    return {
        p.relative_to(directory).as_posix(): (
            (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file()
            else ("dir", 0)
        )
        for p in sorted(directory.rglob("*"))
    }


def test_article_loads_with_its_front_matter() -> None:
    docs = {d.source: d for d in load_corpus(CORPUS)}
    doc = docs[ARTICLE]
    assert doc.title == "Node.js vs Python for Backend Development: Which to Choose in 2026"
    assert doc.kind == "markdown"
    assert doc.metadata["author"] == "Ravi Jadhav"
    assert doc.metadata["date"] == datetime.date(2026, 3, 15)
    assert doc.metadata["publisher"] == "Ortem Technologies"
    assert doc.metadata["source"] == "shared/seeds/000_b373a99a9a519744.txt"
    # The front matter is metadata, not body text.
    assert not doc.body.startswith("---")
    assert "publisher:" not in doc.body
    assert doc.body.lstrip().startswith("# Node.js vs Python for Backend Development")


def test_every_md_and_txt_file_loads_nested_too(tmp_path: Path) -> None:
    (tmp_path / "guides" / "deep").mkdir(parents=True)
    (tmp_path / "top.md").write_text("---\ntitle: Top\n---\n\n# Top\n\nTop body.\n")
    (tmp_path / "notes.txt").write_text("Plain notes\n\nSecond paragraph.\n")
    (tmp_path / "guides" / "a.md").write_text("# Guide A\n\nBody A.\n")
    (tmp_path / "guides" / "deep" / "b.txt").write_text("Deep text.\n")
    (tmp_path / "guides" / "deep" / "C.MD").write_text("# Upper-case suffix\n\nStill markdown.\n")
    (tmp_path / "ignored.json").write_text('{"not": "a corpus file"}')
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    docs = load_corpus(tmp_path)
    assert [d.source for d in docs] == [
        "guides/a.md",
        "guides/deep/C.MD",
        "guides/deep/b.txt",
        "notes.txt",
        "top.md",
    ]
    by_source = {d.source: d for d in docs}
    assert by_source["top.md"].title == "Top"
    assert by_source["guides/a.md"].title == "Guide A"
    assert by_source["guides/deep/C.MD"].kind == "markdown"
    assert by_source["notes.txt"].kind == "text"
    assert by_source["notes.txt"].title == "Plain notes"
    assert by_source["guides/deep/b.txt"].body == "Deep text.\n"


def test_real_corpus_files_all_load() -> None:
    expected = sorted(
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.suffix.lower() in (".md", ".txt")
    )
    docs = load_corpus(CORPUS)
    assert [d.source for d in docs] == expected
    assert all(isinstance(d, Document) and d.body.strip() for d in docs)


def test_missing_directory(tmp_path: Path) -> None:
    message = corpus_error(tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "only.json").write_text("{}")
    message = corpus_error(tmp_path)
    assert str(tmp_path) in message and "no .md or .txt files" in message


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nFine.\n")
    (tmp_path / "blob.md").write_bytes(b"# Looks like text\x00\x01\x02 but is not")
    message = corpus_error(tmp_path)
    assert "blob.md" in message and "binary" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "latin1.txt").write_bytes("Café au lait".encode("latin-1"))
    message = corpus_error(tmp_path)
    assert "sub/latin1.txt" in message and "UTF-8" in message


def test_unreadable_file(tmp_path: Path) -> None:
    # Tests run as root, so chmod cannot make a file unreadable: a broken symlink can.
    (tmp_path / "x.md").symlink_to(tmp_path / "gone.md")
    message = corpus_error(tmp_path)
    assert "x.md" in message and "Cannot read" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("---\ntitle: [unclosed\n---\n\n# Body\n", "not valid YAML (line 2: "),
        ("---\ntitle: Never closed\n\n# Body\n", "never closed"),
        ("---\n- a\n- list\n---\n\n# Body\n", "must be a YAML mapping"),
    ],
    ids=["invalid-yaml", "unclosed", "not-a-mapping"],
)
def test_bad_front_matter(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "ok.md").write_text("# Fine\n\nFine.\n")
    (tmp_path / "bad.md").write_text(content)
    message = corpus_error(tmp_path)
    assert "bad.md" in message and words in message


def test_bom_and_crlf_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "win.md").write_bytes(
        "\ufeff---\r\ntitle: Windows\r\n---\r\n\r\n# Windows\r\n\r\nBody.\r\n".encode()
    )
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "Windows"
    assert "\r" not in doc.body and doc.body == "\n# Windows\n\nBody.\n"


def test_hidden_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".drafts").mkdir()
    (tmp_path / ".drafts" / "wip.md").write_bytes(b"\x00 not even text")
    (tmp_path / ".notes.md").write_bytes(b"\xff\xfe")
    (tmp_path / "real.md").write_text("# Real\n\nBody.\n")
    assert [d.source for d in load_corpus(tmp_path)] == ["real.md"]


def test_loading_and_chunking_never_modify_the_corpus() -> None:
    before = snapshot(CORPUS)
    assert ARTICLE in before
    chunk_corpus(load_corpus(CORPUS))
    chunk_corpus(load_corpus(CORPUS))
    assert snapshot(CORPUS) == before  # same files, same bytes, same mtimes, nothing added


def test_empty_front_matter_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("---\n---\n# Heading\n\nBody.\n")
    (doc,) = load_corpus(tmp_path)
    assert doc.metadata == {} and doc.title == "Heading"
    assert doc.body == "# Heading\n\nBody.\n" and doc.line_offset == 2


def test_front_matter_closes_only_on_a_line_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "dashes.md").write_text("---\ntitle: Dashes\n---   \n---- not a closer\n")
    (doc,) = load_corpus(tmp_path)
    assert doc.title == "Dashes" and doc.body == "---- not a closer\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("---\na: &x [1, 2]\ntitle: *x\n---\n# Body\n", "YAML alias"),
        # libyaml refuses the depth; pure-Python PyYAML would recurse too deep.
        ("---\ntitle: " + "[" * 5000 + "]" * 5000 + "\n---\n# Body\n", "not valid|too deeply"),
        ("---\ntitle: [a, b]\n---\n# Body\n", "title must be text"),
        ("---\ntitle: {a: 1}\n---\n# Body\n", "title must be text"),
    ],
    ids=["alias", "deep-nesting", "title-list", "title-mapping"],
)
def test_hostile_front_matter(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "hostile.md").write_text(content)
    message = corpus_error(tmp_path)
    assert "hostile.md" in message and any(w in message for w in words.split("|"))


@pytest.mark.parametrize("name", [b"caf\xe9.md", b"new\nline.md", b"tab\tname.txt"])
def test_file_names_that_cannot_be_shown_are_refused(tmp_path: Path, name: bytes) -> None:
    with open(os.path.join(os.fsencode(tmp_path), name), "wb") as f:
        f.write(b"# Fine\n\nFine text.\n")
    message = corpus_error(tmp_path)
    assert "rename it" in message and "\\" in message  # the odd byte or character, escaped
