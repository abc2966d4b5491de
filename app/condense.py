"""Offline condensing: a follow-up plus its conversation becomes one standalone question."""

import re

from app.answer import Turn
from app.intent import asks_items
from app.query import concepts_of

_LEADING = re.compile(
    r"^\s*(?:(?:and|but|so|ok(?:ay)?|also|then|hmm+)[\s,]+)*"
    r"(?:(?:what|how)\s+about|what\s+if\s+(?:it'?s|we\s+(?:do|build))|and\s+for|for)\s+",
    re.I,
)
_TRAILING = re.compile(r"\s*(?:then|instead|too|as well)?\s*[?!.]*\s*$", re.I)
_CONTENT = re.compile(r"[A-Za-z][A-Za-z0-9.+#/-]+")
# Words that carry no topic of their own: a follow-up made only of these leans on the one before.
_FUNCTION_WORDS = set(
    """
    why what how which the that this then and but are you sure really one ones is it its
    about for with would should could can say said there they them instead more tell explain
    better faster best pick choose use does did same case answer come so mean meant exactly
    again please side sides node node.js nodejs python javascript typescript js stack
    language languages other way
    """.split()
)
_THAT_SIDE = re.compile(r"\b(?:that|the same) (?:side|language|one|stack)\b", re.I)
_ANAPHOR = re.compile(r"\s*\b(?:for|with|in)\s+(?:that|it|this|those|them)\b|\s+there\b", re.I)
_SIDE = re.compile(r"\b(Node\.js|Python)\b")
_TOPIC = re.compile(r"\bfor\s+(.+?)\s*(?:[?.!]|$)", re.I)


class RuleCondenser:
    """Rewrites "and what about X?" as a question about X; a follow-up with no topic of its
    own ("why?", "what about the Python side?") is asked together with the question before."""

    def condense(self, question: str, history: list[Turn]) -> str:
        """Standalone question; unchanged when there is no history."""
        previous = next((t.content for t in reversed(history) if t.role == "user"), "")
        if not previous:
            return question
        side = _side_named(history)
        if side:
            question = _THAT_SIDE.sub(side, question)
        topic = _TRAILING.sub("", _LEADING.sub("", question, count=1))
        if concepts_of(question):
            led = _LEADING.match(question) is not None
            if led and not asks_items(topic):
                return f"Node.js or Python for {topic}?"
            return question
        if asks_items(question):
            # "which libraries on the Python side?" after a GraphQL question: ask it of GraphQL.
            about = _TOPIC.search(previous)
            subject = about.group(1) if about else previous.rstrip("?.! ")
            asked = _ANAPHOR.sub("", _TRAILING.sub("", question))
            on_side = f" on the {side} side" if side and side.lower() not in asked.lower() else ""
            return f"{asked} for {subject}{on_side}?"
        content = [w for w in _CONTENT.findall(topic) if w.lower() not in _FUNCTION_WORDS]
        if _LEADING.match(question) and content:
            return f"Node.js or Python for {topic}?"  # "what about Go?" is a question of its own
        return f"{previous.rstrip()} {question.strip()}"


def _side_named(history: list[Turn]) -> str | None:
    """The side the conversation last settled on: the assistant's verdict, else the user's."""
    for turn in reversed(history):
        found = _SIDE.search(turn.content)
        if found:
            return found.group(1)
    return None
