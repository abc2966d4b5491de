"""Structure-aware chunking: heading sections, whole tables, and one sentence per table row."""

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.corpus import Document
from app.errors import CorpusError

# Bump whenever chunk text or ids would change: the index is then rebuilt from scratch.
CHUNKER_VERSION = "1"
PATH_SEP = " › "

ChunkKind = Literal["text", "table", "row"]
MetaValue = str | int | float | bool


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document, with where it came from."""

    id: str
    source: str
    section: str
    kind: ChunkKind
    location: str  # stable position within the source, e.g. "Ecosystem Comparison#row:orm"
    text: str
    metadata: dict[str, MetaValue] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Content hash (text and metadata): what an incremental re-index compares."""
        payload = json.dumps([self.text, self.section, self.metadata], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def embed_text(self) -> str:
        """What gets embedded: prose carries its heading path, rows speak for themselves."""
        return self.text if self.kind == "row" else f"{self.section}\n{self.text}"

    @property
    def cells(self) -> dict[str, str]:
        """Header → cell text, for row chunks (empty otherwise)."""
        raw = self.metadata.get("cells")
        return json.loads(raw) if isinstance(raw, str) else {}


def chunk_corpus(documents: Iterable[Document], max_chars: int = 1200) -> list[Chunk]:
    """Chunk every document, in corpus order."""
    return [chunk for doc in documents for chunk in chunk_document(doc, max_chars)]


def chunk_document(doc: Document, max_chars: int = 1200) -> list[Chunk]:
    """Split one document into section, table and row chunks."""
    builder = _Builder(doc, max_chars)
    if doc.kind == "text":
        for para in re.split(r"\n\s*\n", doc.body):
            builder.add_block(" ".join(para.split()))
    else:
        # Split as Markdown does: splitlines() also breaks at \f, \x1c, \u2028…, and the
        # token line numbers would then point at the wrong lines.
        builder.walk(_MD.parse(doc.body), doc.body.split("\n"))
    builder.flush()
    return builder.chunks


_MD = MarkdownIt("commonmark").enable("table")


def sentence_case(title: str) -> str:
    """'Use Case Decision Matrix' → 'Use case decision matrix' (names like Node.js kept)."""
    words = title.split(" ")
    return " ".join(
        [words[0]]
        + [
            w.lower() if w.isalpha() and w[:1].isupper() and w[1:].islower() else w
            for w in words[1:]
        ]
    )


def slug(text: str) -> str:
    """A short, stable key: 'Real-time apps (chat, gaming)' → 'real-time-apps-chat-gaming'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "row"


class _Builder:
    def __init__(self, doc: Document, max_chars: int) -> None:
        self.doc = doc
        self.max_chars = max_chars
        self.headings: list[tuple[int, str]] = []
        self.blocks: list[str] = []
        self.chunks: list[Chunk] = []
        self.ordinals: dict[str, int] = {}
        self.locations: set[str] = set()

    @property
    def section(self) -> str:
        # The document's own title (a lone top-level heading) is not part of the path.
        path = [text for level, text in self.headings if level > 1] or [
            text for _, text in self.headings
        ]
        return PATH_SEP.join(path) or self.doc.title

    def walk(self, tokens: list[Token], lines: list[str]) -> None:
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            close = _closing_index(tokens, i)
            if tok.type == "heading_open":
                self.flush()
                level = int(tok.tag[1])
                self.headings = [h for h in self.headings if h[0] < level]
                self.headings.append((level, _inline_text(tokens[i + 1])))
            elif tok.type == "table_open":
                self.flush()
                self.add_table(tokens[i : close + 1], lines)
            elif tok.type in ("paragraph_open", "blockquote_open"):
                self.add_block(_block_text(tokens[i : close + 1]))
            elif tok.type in ("bullet_list_open", "ordered_list_open"):
                self.add_block(_list_text(tokens[i : close + 1]))
            elif tok.type in ("fence", "code_block"):
                self.add_block(tok.content.rstrip("\n"))
            i = close + 1

    def add_block(self, text: str) -> None:
        if not text.strip():
            return
        if self.blocks and len("\n\n".join([*self.blocks, text])) > self.max_chars:
            self.flush()
        self.blocks.append(text)

    def flush(self) -> None:
        if self.blocks:
            self.emit("text", "\n\n".join(self.blocks), {})
            self.blocks = []

    def emit(self, kind: ChunkKind, text: str, meta: dict[str, MetaValue], key: str = "") -> None:
        section = self.section
        if not key:
            n = self.ordinals.get(f"{section}#{kind}", 0)
            self.ordinals[f"{section}#{kind}"] = n + 1
            key = f"{kind}{n}"
        location = f"{section}#{key}"
        self.locations.add(location)
        digest = hashlib.sha256(f"{self.doc.source}\n{location}\n{text}".encode()).hexdigest()
        metadata: dict[str, MetaValue] = {
            "source": self.doc.source,
            "section": section,
            "kind": kind,
            "location": location,
            "title": self.doc.title,
            **meta,
        }
        self.chunks.append(
            Chunk(digest[:16], self.doc.source, section, kind, location, text, metadata)
        )

    def add_table(self, tokens: list[Token], lines: list[str]) -> None:
        rows: list[tuple[int, list[str]]] = []
        for j, tok in enumerate(tokens):
            if tok.type == "tr_open":
                cells = [
                    _inline_text(tokens[k + 1])
                    for k in range(j, _closing_index(tokens, j))
                    if tokens[k].type in ("th_open", "td_open")
                ]
                rows.append((tok.map[0] if tok.map else -1, cells))
        header = rows[0][1]
        table_name = sentence_case(self.headings[-1][1]) if self.headings else "Table"
        if not all(header) or len(set(header)) != len(header):
            raise CorpusError(
                f"Corpus file {self.doc.source}, line {rows[0][0] + 1 + self.doc.line_offset}: "
                "every table header cell needs a name of its own: name the empty or repeated one."
            )
        for line_no, cells in rows[1:]:
            written = _raw_cell_count(lines[line_no]) if 0 <= line_no < len(lines) else len(cells)
            if written != len(header) or not all(cells):
                raise CorpusError(
                    f"Corpus file {self.doc.source}, line {line_no + 1 + self.doc.line_offset}: "
                    f"table row has {written} cells but the header has {len(header)} "
                    "(or a cell is empty): fill in every cell."
                )
        start = tokens[0].map[0] if tokens[0].map else 0
        end = tokens[0].map[1] if tokens[0].map else start
        self.emit("table", "\n".join(lines[start:end]), {"table": table_name})
        labels = [sentence_case(h) for h in header]
        for _, cells in rows[1:]:
            sentence = " ".join(f"{h}: {_end_stop(c)}" for h, c in zip(labels, cells, strict=True))
            meta: dict[str, MetaValue] = {
                "table": table_name,
                "row_key": slug(cells[0]),
                "cells": json.dumps(dict(zip(header, cells, strict=True))),
            }
            self.emit("row", f"{table_name} — {sentence}", meta, key=self.row_key(cells[0]))

    def row_key(self, first_cell: str) -> str:
        """`row:<slug>`, made unique within the section (rows "C++" and "C#" both slug to "c")."""
        key = base = f"row:{slug(first_cell)}"
        n = 1
        while f"{self.section}#{key}" in self.locations:
            n += 1
            key = f"{base}~{n}"
        return key


def _end_stop(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _raw_cell_count(line: str) -> int:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return len(re.split(r"(?<!\\)\|", inner))


def _closing_index(tokens: list[Token], start: int) -> int:
    if tokens[start].nesting != 1:
        return start
    depth = 0
    for j in range(start, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _inline_text(tok: Token) -> str:
    parts: list[str] = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return " ".join("".join(parts).split())


def _block_text(tokens: list[Token]) -> str:
    return "\n".join(_inline_text(t) for t in tokens if t.type == "inline")


def _list_text(tokens: list[Token]) -> str:
    items: list[str] = []
    for j, tok in enumerate(tokens):
        if tok.type == "list_item_open":
            inner = tokens[j : _closing_index(tokens, j) + 1]
            depth = tok.level // 2 - tokens[0].level // 2
            first = next((t for t in inner if t.type == "inline"), None)
            if first is not None:
                items.append("  " * depth + "- " + _inline_text(first))
    return "\n".join(items)
