"""Wires settings into a ready `Advisor`: embeddings, a fresh index, retriever and engine."""

import sys
from collections.abc import Callable
from typing import Any

from langchain_core.embeddings import Embeddings

from app import index
from app.chain import Advisor, Condenser, Engine
from app.config import Settings
from app.embeddings import load_embeddings
from app.errors import ConfigError
from app.retrieval import HybridRetriever


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A rich progress bar on stderr, shown only when there is something to do."""
    from rich.progress import Progress

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if total == 0:
            return
        if "bar" not in state:
            bar = Progress(transient=True, console=_stderr_console())
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task(label, total=total)
        state["bar"].update(state["task"], completed=done, total=total)
        if done >= total:
            state.pop("bar").stop()

    return update


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)


def ensure_index(
    settings: Settings, embeddings: Embeddings, quiet: bool = False
) -> index.IndexReport | None:
    """Build or update the index when it is missing or stale; None when it was current."""
    if index.staleness(settings) is None:
        return None
    report = index.sync(settings, embeddings, progress=None if quiet else progress_bar("Embedding"))
    if not quiet:
        print(report.summary(), file=sys.stderr)
    return report


def make_engine(settings: Settings, retriever: HybridRetriever) -> tuple[Engine, Condenser | None]:
    """The answer engine chosen by `ADVISOR_LLM`: offline by default, an LLM when named."""
    from app.offline import OfflineEngine

    offline = OfflineEngine(retriever)
    if not settings.llm:
        return offline, None
    provider = settings.llm.split(":", 1)[0]
    match provider:
        case "ollama" | "openai":
            from app.llm import LLMCondenser, LLMEngine, make_chat_model

            model = make_chat_model(settings)
            return LLMEngine(model, settings.llm), LLMCondenser(model)
        case _:
            raise ConfigError(
                f"Unknown LLM backend {settings.llm!r}: use 'ollama:MODEL' or 'openai:MODEL', "
                "or unset ADVISOR_LLM for the offline engine."
            )


def build_advisor(
    settings: Settings,
    embeddings: Embeddings | None = None,
    engine: Engine | None = None,
    condenser: Condenser | None = None,
    refresh: bool = True,
    quiet: bool = False,
) -> Advisor:
    """Load everything once; pass `engine`/`condenser` to replace the configured ones."""
    from app.offline import OfflineEngine

    embeddings = embeddings or load_embeddings(settings.embedder, settings.index_dir)
    if refresh:
        ensure_index(settings, embeddings, quiet=quiet)
    kb = index.load(settings, embeddings)
    retriever = HybridRetriever(kb, embeddings, k=settings.k)
    if engine is None:
        engine, configured_condenser = make_engine(settings, retriever)
        condenser = condenser or configured_condenser
    fallback = None if isinstance(engine, OfflineEngine) else OfflineEngine(retriever)
    return Advisor(kb, retriever, engine, fallback=fallback, condenser=condenser)
