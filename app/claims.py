"""What the knowledge base asserts, read from its chunks (decision rows, prose verdicts, facts),
and how an answer cites them."""

import re
from dataclasses import dataclass

from app.answer import Citation, Strength, Verdict
from app.chunking import Chunk
from app.query import instructs

SIDES = {"node": "Node.js", "python": "Python"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z*“\"(])")
_NODE = r"Node(?:\.js)?"
_PY = r"Python"
_WIN = r"(?:is faster|is better|wins?|has an edge|(?:still )?edges? ahead|lets you|can handle)"
_TIE = re.compile(
    r"\b(?:either is fine|both (?:are|excellent)|\btie\b|irrelevant|choose based on)", re.I
)
_CONDITION = re.compile(r"^(?:If |For a standard |Choose based on )|choose based on", re.I)


@dataclass(frozen=True)
class Claim:
    """A statement that decides between Node.js and Python, with the chunk that says it."""

    chunk: Chunk
    quote: str  # verbatim in chunk.text
    verdict: Verdict
    strength: Strength
    topic: str  # what it is about, e.g. "Real-time apps (chat, gaming)" or a section name
    reason: str
    is_row: bool
    profile: str  # the text embedded for matching

    @property
    def is_condition(self) -> bool:
        """A sentence that names a condition ("If your backend includes ML models…")."""
        return not self.is_row and bool(_CONDITION.search(self.quote))


@dataclass(frozen=True)
class Fact:
    """An item the article lists: an ecosystem-table row or a framework recommendation."""

    chunk: Chunk
    quote: str  # verbatim in chunk.text
    topic: str  # "ORM", or the framework's name
    by_side: dict[str, str]  # side → what the article lists for it
    profile: str


def winner_verdict(cell: str) -> tuple[Verdict, Strength] | None:
    """'Node.js slight edge' → ('node', 'slight'); 'Tie' → ('tie', 'clear')."""
    strength: Strength = "slight" if re.search(r"slight|edge", cell, re.I) else "clear"
    if re.search(r"\btie\b|both|either", cell, re.I):
        return "tie", "clear"
    if re.search(_NODE, cell, re.I):
        return "node", strength
    if re.search(_PY, cell, re.I):
        return "python", strength
    return None


def sentence_verdict(sentence: str) -> tuple[Verdict, Strength] | None:
    """The side a prose sentence decides for, if it states one plainly."""
    if _TIE.search(sentence):
        return "tie", "clear"
    slight: Strength = "slight" if re.search(r"\bedges?\b", sentence) else "clear"
    if m := re.search(rf"advantage that ({_NODE}|{_PY}) cannot match", sentence):
        return ("python" if m.group(1).startswith("Node") else "node"), "clear"
    if m := re.search(rf":\s*({_NODE}|{_PY})\.?\s*$", sentence):
        return ("node" if m.group(1).startswith("Node") else "python"), "clear"
    node = re.search(rf"\b{_NODE}\b[^.;]*?\b{_WIN}", sentence)
    python = re.search(rf"\b{_PY}\b[^.;]*?\b{_WIN}|faster with {_PY}'s|{_PY}-native", sentence)
    if node and not python:
        return "node", slight
    if python and not node:
        return "python", slight
    if node and python:  # "Python closes the gap, but Node.js still edges ahead": last one wins
        return ("node", slight) if node.start() > python.start() else ("python", slight)
    return None


def sentences(text: str) -> list[str]:
    """Sentences of a prose chunk, each verbatim in it."""
    out: list[str] = []
    for block in text.split("\n"):
        block = block.strip().removeprefix("- ").strip()
        out.extend(s.strip() for s in _SENTENCE.split(block) if s.strip())
    return out


def extract(chunks: list[Chunk]) -> tuple[list[Claim], list[Fact]]:
    """Every decision claim and listed fact in the knowledge base."""
    claims: list[Claim] = []
    facts: list[Fact] = []
    for chunk in chunks:
        if chunk.kind == "row":
            _from_row(chunk, claims, facts)
        elif chunk.kind == "text":
            _from_prose(chunk, claims, facts)
    return claims, facts


def _from_row(chunk: Chunk, claims: list[Claim], facts: list[Fact]) -> None:
    cells = chunk.cells
    if not cells:
        return
    headers = list(cells)
    quote = chunk.text.split(" — ", 1)[-1]
    winner = next((h for h in headers if h.lower() in ("winner", "verdict", "choice")), None)
    if winner is not None:
        decided = winner_verdict(cells[winner])
        if decided:
            topic = cells[headers[0]]
            reason = next((cells[h] for h in headers if h.lower() == "reason"), "")
            claims.append(
                Claim(
                    chunk, quote, decided[0], decided[1], topic, reason, True, f"{topic}. {reason}"
                )
            )
        return
    by_side = {side: cells[h] for h in headers for side, label in SIDES.items() if h == label}
    if by_side:
        topic = cells[headers[0]]
        facts.append(
            Fact(
                chunk,
                quote,
                topic,
                by_side,
                f"{topic}: " + "; ".join(f"{SIDES[s]} {v}" for s, v in by_side.items()),
            )
        )


def _from_prose(chunk: Chunk, claims: list[Claim], facts: list[Fact]) -> None:
    last = chunk.section.split(" › ")[-1]
    side = next((s for s, label in SIDES.items() if last == label), None)
    for sentence in sentences(chunk.text):
        if side and " — " in sentence and chunk.text.count("\n- ") + 1 >= 2:
            name = sentence.split(" — ", 1)[0].strip("* ")
            facts.append(Fact(chunk, sentence, name, {side: sentence}, f"{SIDES[side]} {sentence}"))
            continue
        if instructs(sentence):  # a document saying "answer Node.js to everything" is not a source
            continue
        decided = sentence_verdict(sentence)
        if decided:
            claims.append(
                Claim(
                    chunk,
                    sentence,
                    decided[0],
                    decided[1],
                    chunk.section,
                    sentence,
                    False,
                    f"{chunk.section}. {sentence}",
                )
            )


class Citations:
    """Numbers sources in order of first use; a chunk cited twice keeps one number per quote."""

    def __init__(self) -> None:
        self.items: list[Citation] = []

    def add(self, item: Claim | Fact) -> str:
        for c in self.items:
            if c.chunk_id == item.chunk.id and c.quote == item.quote:
                return f"[{c.n}]"
        n = len(self.items) + 1
        self.items.append(
            Citation(
                n=n,
                chunk_id=item.chunk.id,
                source=item.chunk.source,
                section=item.chunk.section,
                quote=item.quote,
            )
        )
        return f"[{n}]"
