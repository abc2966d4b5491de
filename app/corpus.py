"""Reads the knowledge base: every `.md` and `.txt` file under the corpus directory."""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.errors import CorpusError

SUFFIXES = (".md", ".txt")


@dataclass(frozen=True)
class Document:
    """One corpus file: its body text and front-matter metadata."""

    source: str  # path relative to the corpus directory, POSIX style
    title: str
    body: str
    kind: str  # "markdown" or "text"
    metadata: dict[str, Any] = field(default_factory=dict)
    line_offset: int = 0  # lines before `body` in the file (front matter), for error messages

    @property
    def sha256(self) -> str:
        """Hash of the document's body and metadata."""
        return hashlib.sha256(f"{self.metadata!r}\n{self.body}".encode()).hexdigest()


def load_corpus(corpus_dir: Path) -> list[Document]:
    """Load every document, sorted by path; raise `CorpusError` naming any bad file."""
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"Corpus directory {corpus_dir} does not exist: create it and add .md or .txt files."
        )
    paths = sorted(
        p for p in corpus_dir.rglob("*") if p.suffix.lower() in SUFFIXES and _visible(p, corpus_dir)
    )
    if not paths:
        raise CorpusError(f"Corpus directory {corpus_dir} has no .md or .txt files: add some.")
    return [load_document(path, corpus_dir) for path in paths]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def load_document(path: Path, corpus_dir: Path) -> Document:
    """Read one file as UTF-8 text, splitting off YAML front matter."""
    source = path.relative_to(corpus_dir).as_posix()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(
            f"Cannot read corpus file {source} ({exc.strerror or exc}): fix or remove it."
        ) from None
    if b"\x00" in raw:
        raise CorpusError(f"Corpus file {source} is binary, not text: remove it or convert it.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"Corpus file {source} is not UTF-8 (bad byte at offset {exc.start}): "
            "re-save it as UTF-8."
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    is_markdown = path.suffix.lower() == ".md"
    metadata, body = _split_front_matter(text, source) if is_markdown else ({}, text)
    title = str(metadata.get("title") or first_line(body) or path.stem)
    return Document(
        source=source,
        title=title,
        body=body,
        kind="markdown" if is_markdown else "text",
        metadata=metadata,
        line_offset=text[: len(text) - len(body)].count("\n"),
    )


def _split_front_matter(text: str, source: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end == -1:
        raise CorpusError(f"Corpus file {source}: front matter opened with '---' is never closed.")
    try:
        metadata = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise CorpusError(
            f"Corpus file {source}: front matter is not valid YAML ({_yaml_problem(exc)}); fix it."
        ) from None
    if not isinstance(metadata, dict):
        raise CorpusError(f"Corpus file {source}: front matter must be a YAML mapping.")
    body_start = text.find("\n", end + 4)
    body = "" if body_start == -1 else text[body_start + 1 :]
    return {str(k): v for k, v in metadata.items()}, body


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: yaml's own message spans several, with a source excerpt."""
    mark = getattr(exc, "problem_mark", None)
    detail = ", ".join(
        str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
    )
    if mark is None or not detail:
        return " ".join(str(exc).split())
    return f"line {mark.line + 2}: {detail}"  # +1 for 1-based, +1 for the opening '---'


def first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""
