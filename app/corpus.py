"""Reads the knowledge base: every `.md` and `.txt` file under the corpus directory."""

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.errors import CorpusError

SUFFIXES = (".md", ".txt")
# libyaml when present: fast, and it refuses absurd nesting instead of recursing into it.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CLOSING = re.compile(r"^---[ \t]*$", re.M)


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
    # Undecodable bytes in a name come back as lone surrogates, which nothing can encode.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in source):
        raise CorpusError(
            f"Corpus file name {ascii(source)} has control characters or is not UTF-8: rename it."
        )
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
    title = metadata.get("title")
    if isinstance(title, dict | list):
        raise CorpusError(f"Corpus file {source}: front matter title must be text.")
    title = str(title or first_line(body) or path.stem)
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
    closing = _CLOSING.search(text, 4)
    if closing is None:
        raise CorpusError(f"Corpus file {source}: front matter opened with '---' is never closed.")
    block = text[4 : closing.start()]
    try:
        # An alias can expand exponentially ("billion laughs"); front matter never needs one.
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(block, Loader=_YAML_LOADER)):
            raise CorpusError(
                f"Corpus file {source}: front matter uses a YAML alias (*name): write it out."
            )
        metadata = yaml.load(block, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise CorpusError(
            f"Corpus file {source}: front matter is not valid YAML "
            f"({_yaml_problem(exc, block)}); fix it."
        ) from None
    except RecursionError:
        raise CorpusError(f"Corpus file {source}: front matter is nested too deeply.") from None
    if not isinstance(metadata, dict):
        raise CorpusError(f"Corpus file {source}: front matter must be a YAML mapping.")
    body = text[closing.end() + 1 :]
    return {str(k): v for k, v in metadata.items()}, body


def _yaml_problem(exc: yaml.YAMLError, block: str) -> str:
    """One line for a YAML error: yaml's own message spans several, with a source excerpt."""
    mark = getattr(exc, "problem_mark", None)
    detail = ", ".join(
        str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
    )
    if mark is None or not detail:
        return " ".join(str(exc).split())
    # libyaml puts errors at the end of the input one line past it: keep them in the block.
    line = min(mark.line, max(block.count("\n") - 1, 0))
    return f"line {line + 2}: {detail}"  # +1 for 1-based, +1 for the opening '---'


def first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""
