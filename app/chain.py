"""The one chain every interface calls: condense → hybrid retrieval → answer engine → `Answer`."""

import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import Runnable, RunnableLambda

from app.answer import Answer, AskRequest, Citation, Strength, Timings, Turn, Verdict
from app.errors import BadRequest, LLMUnavailable
from app.index import KnowledgeBase
from app.retrieval import Hit, HybridRetriever, Query


@dataclass
class Draft:
    """What an engine returns; the chain adds the question, timings and `kb_version`."""

    answer: str
    engine: str
    verdict: Verdict | None = None
    strength: Strength | None = None
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    flags: list[str] = field(default_factory=list)


class Engine(Protocol):
    """Composes an answer from the retrieved chunks."""

    name: str

    def compose(self, query: Query, hits: list[Hit]) -> Draft:
        """Answer `query.text` from `hits` (the retrieved chunks, best first)."""
        ...


class Condenser(Protocol):
    """Turns a follow-up plus its conversation into a standalone question."""

    def condense(self, question: str, history: list[Turn]) -> str:
        """The standalone question."""
        ...


_LEADING = re.compile(
    r"^\s*(?:(?:and|but|so|ok(?:ay)?|also|then|hmm+)[\s,]+)*"
    r"(?:(?:what|how)\s+about|what\s+if\s+(?:it'?s|we\s+(?:do|build))|and\s+for|for)\s+",
    re.I,
)
_TRAILING = re.compile(r"\s*(?:then|instead|too|as well)?\s*[?!.]*\s*$", re.I)
_CONTENT = re.compile(r"[A-Za-z][A-Za-z0-9.+#/-]{2,}")
_FUNCTION_WORDS = set(
    """
    why what how which the that this then and but are you sure really one ones is it its
    about for with would should could can say said there they them instead more tell explain
    better faster best pick choose use does did same case answer come so mean meant exactly
    again please
    """.split()
)


_THAT_SIDE = re.compile(r"\b(?:that|the same) (?:side|language|one|stack)\b", re.I)
_ASKS_ITEMS = re.compile(r"^\s*(?:which|what|list|name)\b", re.I)
_SIDE = re.compile(r"\b(Node\.js|Python)\b")


def _side_named(history: list[Turn]) -> str | None:
    """The side the conversation last settled on: the assistant's verdict, else the user's."""
    for turn in reversed(history):
        found = _SIDE.search(turn.content)
        if found:
            return found.group(1)
    return None


class RuleCondenser:
    """Offline condensing: rewrite "and what about X?" as a question about X, else keep context."""

    def condense(self, question: str, history: list[Turn]) -> str:
        """Standalone question; unchanged when there is no history."""
        if not history:
            return question
        previous = next((t.content for t in reversed(history) if t.role == "user"), "")
        side = _side_named(history)
        if side:
            question = _THAT_SIDE.sub(side, question)
        topic = _LEADING.sub("", question, count=1)
        led = topic != question
        topic = _TRAILING.sub("", topic)
        content = [w for w in _CONTENT.findall(topic) if w.lower() not in _FUNCTION_WORDS]
        if led and content and not _ASKS_ITEMS.search(topic):
            return f"Node.js or Python for {topic}?"
        if content or not previous:
            return question
        return f"{previous.rstrip()} {question.strip()}"


class Advisor:
    """Holds the loaded knowledge base, retriever and engine; `ask` is the product."""

    def __init__(
        self,
        kb: KnowledgeBase,
        retriever: HybridRetriever,
        engine: Engine,
        fallback: Engine | None = None,
        condenser: Condenser | None = None,
    ) -> None:
        self.kb = kb
        self.retriever = retriever
        self.engine = engine
        self.fallback = fallback
        self.condenser = condenser or RuleCondenser()
        self.runnable: Runnable[Any, Answer] = (
            RunnableLambda(self._condense, name="condense")
            | RunnableLambda(self._retrieve, name="retrieve")
            | RunnableLambda(self._answer, name="answer")
        ).with_config(run_name="advisor")

    def ask(self, request: AskRequest | dict[str, Any] | str) -> Answer:
        """Answer one question (with its history) through the chain."""
        return self.runnable.invoke(_as_request(request))

    def _condense(self, request: AskRequest) -> dict[str, Any]:
        started = time.perf_counter()
        standalone = self.condenser.condense(request.question, request.history)
        return {
            "request": request,
            "standalone": standalone,
            "t0": started,
            "condense": time.perf_counter() - started,
        }

    def _retrieve(self, state: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        query = self.retriever.embed(state["standalone"])
        hits = self.retriever.retrieve(query)
        return {**state, "query": query, "hits": hits, "retrieve": time.perf_counter() - started}

    def _answer(self, state: dict[str, Any]) -> Answer:
        started = time.perf_counter()
        try:
            draft = self.engine.compose(state["query"], state["hits"])
        except LLMUnavailable as exc:
            if self.fallback is None:
                raise
            draft = self.fallback.compose(state["query"], state["hits"])
            draft.flags.append(f"fallback: {exc}")
            draft.engine = f"{draft.engine} (fallback from {self.engine.name})"
        done = time.perf_counter()
        request: AskRequest = state["request"]
        return Answer(
            question=request.question,
            standalone_question=state["standalone"],
            verdict=draft.verdict,
            strength=draft.strength,
            answer=draft.answer,
            citations=draft.citations,
            abstained=draft.abstained,
            engine=draft.engine,
            kb_version=self.kb.kb_version,
            flags=draft.flags,
            timings_ms=Timings(
                condense=round(state["condense"] * 1000, 3),
                retrieve=round(state["retrieve"] * 1000, 3),
                answer=round((done - started) * 1000, 3),
                total=round((done - state["t0"]) * 1000, 3),
            ),
        )


def _as_request(request: AskRequest | dict[str, Any] | str) -> AskRequest:
    if isinstance(request, AskRequest):
        return request
    from pydantic import ValidationError

    try:
        if isinstance(request, str):
            return AskRequest(question=request)
        return AskRequest.model_validate(request)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise BadRequest(f"{where}: {first.get('msg', 'invalid')}") from None
