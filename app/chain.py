"""The one chain every interface calls: condense → hybrid retrieval → answer engine → `Answer`."""

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.answer import Answer, AskRequest, Citation, Strength, Timings, Turn, Verdict
from app.condense import RuleCondenser
from app.errors import BadRequest, LLMUnavailable
from app.index import KnowledgeBase
from app.retrieval import Hit, HybridRetriever, Query

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

# LangSmith tracing hooks into LCEL runs: with it on, `ask` goes through the runnable.
_TRACING = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING")


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
        self._runnable: Runnable[Any, Answer] | None = None

    @property
    def runnable(self) -> "Runnable[Any, Answer]":
        """The chain as an LCEL runnable, for callbacks, tracing and streaming.

        Built on first use: importing LCEL costs ~0.5 s of every cold start, and its per-call
        machinery ~1 ms of every answer, both for nothing when no callback is attached.
        """
        if self._runnable is None:
            from langchain_core.runnables import RunnableLambda

            self._runnable = (
                RunnableLambda(self._condense, name="condense")
                | RunnableLambda(self._retrieve, name="retrieve")
                | RunnableLambda(self._answer, name="answer")
            ).with_config(run_name="advisor")
        return self._runnable

    def ask(self, request: AskRequest | dict[str, Any] | str) -> Answer:
        """Answer one question (with its history): condense, retrieve, answer."""
        checked = _as_request(request)
        if _tracing():
            return self.runnable.invoke(checked)
        return self._answer(self._retrieve(self._condense(checked)))

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


def _tracing() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true") for name in _TRACING)


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
