"""Answers that list what the article lists: ecosystem-table rows and framework recommendations."""

import re
from collections.abc import Sequence

from app.answer import Citation
from app.claims import SIDES, Citations, Fact
from app.intent import mentioned_sides, named_items

# A cell like "Limited (TensorFlow.js)": a rating, then the items in parentheses.
_PAREN = re.compile(r"^(?P<head>[^(]*)\((?P<inner>[^)]*)\)\s*$")
_OTHER_SIDE = re.compile(r"\b(?:equivalents?|counterparts?|alternatives?|instead of|like)\b", re.I)
_EVERY = re.compile(r"\b(?:every|all|each|both)\b", re.I)
# "which frameworks does it recommend?", "node framework recs": the framework recommendations.
_RECOMMENDS = re.compile(r"\b(?:recommend\w*|recs?)\b", re.I)
_FRAMEWORK = re.compile(r"\bframeworks?\b", re.I)
_FRAMEWORKS = re.compile(r"\bframeworks\b", re.I)
_ONE = re.compile(r"\b(?:fastest|best|lightest|most|which (?:one|framework))\b", re.I)


def item_sides(facts: Sequence[Fact]) -> dict[str, set[str]]:
    """Every library or framework the article names ("BullMQ", "Django ORM"), lower-cased,
    with the side(s) it is listed for."""
    sides: dict[str, set[str]] = {}
    for fact in facts:
        for side, value in fact.by_side.items():
            for item in [fact.topic] if fact.chunk.kind != "row" else _entries(value):
                sides.setdefault(item.lower(), set()).add(side)
    return sides


def listed_items(facts: Sequence[Fact]) -> re.Pattern[str] | None:
    """A pattern matching any item of `item_sides`."""
    names = sorted(item_sides(facts), key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, names)) + r")(?![\w])", re.I)


def _entries(value: str) -> set[str]:
    """A cell's items: "Limited (TensorFlow.js)" → TensorFlow.js; "npm (3M+ packages)" → npm."""
    m = _PAREN.match(value)
    parts = [m["inner"]] if m else [value]
    if m and m["head"].strip() and m["head"].strip().islower():
        parts.append(m["head"])  # "npm (3M+ packages)": npm is the item
    return {p.strip() for part in parts for p in part.split(",") if p.strip()[:1].isalpha()}


def best_fact(
    text: str,
    facts: Sequence[Fact],
    scores: Sequence[float],
    threshold: float,
    listed: re.Pattern[str] | None,
) -> Fact | None:
    """The fact the question asks about: by topic, else by a named item, else by score."""
    named = [i for i, f in enumerate(facts) if _names_topic(text, f)]
    if not named and (items := named_items(text, listed)):
        named = [
            i
            for i, f in enumerate(facts)
            if any(item in v.lower() for v in f.by_side.values() for item in items)
        ]
    if not named and _RECOMMENDS.search(text):
        named = [i for i, f in enumerate(facts) if f.chunk.kind != "row"]
    elif not named and _FRAMEWORK.search(text):  # the recommendations or the frameworks row
        named = [
            i for i, f in enumerate(facts) if f.chunk.kind != "row" or _FRAMEWORK.search(f.topic)
        ]
    pool: Sequence[int] = named or range(len(facts))
    if not pool:
        return None
    best = max(pool, key=lambda i: scores[i])
    return facts[best] if named or scores[best] >= threshold else None


def answer_fact(
    text: str,
    fact: Fact,
    facts: Sequence[Fact],
    scores: Sequence[float],
    listed: re.Pattern[str] | None,
) -> tuple[str, list[Citation]]:
    """The row's entries for the sides asked about, or the framework recommendations: the
    answer's text and its citations."""
    cites = Citations()
    sides = _sides_wanted(text, fact, listed)
    if fact.chunk.kind == "row":
        entries = [f"{SIDES[s]}: {fact.by_side[s]}" for s in sides if s in fact.by_side]
        body = (
            f"For {fact.topic}, the article's ecosystem comparison lists "
            f"{'; '.join(entries)} {cites.add(fact)}."
        )
        return body, cites.items
    # A framework recommendation: the one asked about, or every one on the sides asked about.
    if (_names_topic(text, fact) or _ONE.search(text)) and not _FRAMEWORKS.search(text):
        chosen = [fact]
    else:
        if not mentioned_sides(text) and not _EVERY.search(text):
            sides = list(fact.by_side)  # "which frameworks for high throughput?": that side
        ranked = sorted(range(len(facts)), key=lambda i: -scores[i])
        chosen = [
            facts[i]
            for i in ranked
            if facts[i].chunk.kind != "row" and next(iter(facts[i].by_side)) in sides
        ]
    lines = []
    for side in SIDES:
        group = [f for f in chosen if next(iter(f.by_side)) == side]
        if not group:
            continue
        head = (
            f"The article recommends these {SIDES[side]} frameworks:"
            if len(group) > 1
            else f"From the article's {SIDES[side]} framework recommendations:"
        )
        lines.append(head + "\n" + "\n".join(f"- {f.quote} {cites.add(f)}" for f in group))
    return "\n\n".join(lines), cites.items


def _names_topic(text: str, fact: Fact) -> bool:
    """The text names the fact's topic ("ORM", "ORMs", "Hono")."""
    return re.search(rf"\b{re.escape(fact.topic)}s?\b", text, re.I) is not None


def _sides_wanted(text: str, fact: Fact, listed: re.Pattern[str] | None) -> list[str]:
    """Sides named in the question; "a Python equivalent of BullMQ" wants the other side."""
    sides = mentioned_sides(text)
    if sides or not _OTHER_SIDE.search(text):
        return sides or list(SIDES)
    items = named_items(text, listed)
    holding = {s for s, v in fact.by_side.items() if any(i in v.lower() for i in items)}
    return [s for s in SIDES if s not in holding] or list(SIDES)
