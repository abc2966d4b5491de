"""Wires settings into a ready `Advisor`: embeddings, a fresh index, retriever and engine."""

import sys
from collections.abc import Callable
from typing import Any

from langchain_core.embeddings import Embeddings

from app import index
from app.chain import Advisor, Condenser, Engine
from app.config import Settings
from app.embeddings import STARTUP_VECTORS, load_embeddings, remembered
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


def load_retriever(
    settings: Settings,
    embeddings: Embeddings | None = None,
    refresh: bool = True,
    quiet: bool = False,
) -> HybridRetriever:
    """Embeddings, a fresh index (built when `refresh` and stale) and its retriever."""
    embeddings = embeddings or load_embeddings(settings.embedder, settings.index_dir)
    if refresh:
        ensure_index(settings, embeddings, quiet=quiet)
    return HybridRetriever(index.load(settings, embeddings), embeddings, k=settings.k)


def build_advisor(
    settings: Settings,
    embeddings: Embeddings | None = None,
    engine: Engine | None = None,
    condenser: Condenser | None = None,
    refresh: bool = True,
    quiet: bool = False,
) -> Advisor:
    """Load everything once; the engine is `engine`, else the LLM `ADVISOR_LLM` names, else
    the offline engine — which also stands by as the fallback of any other engine."""
    from app.offline import OfflineEngine

    embeddings = embeddings or load_embeddings(settings.embedder, settings.index_dir)
    if refresh:
        ensure_index(settings, embeddings, quiet=quiet)
    # The retriever's topic vectors and the engine's claim vectors, as the last start-up saw them.
    with remembered(embeddings, settings.index_dir / STARTUP_VECTORS):
        retriever = load_retriever(settings, embeddings, refresh=False)
        offline = OfflineEngine(retriever)
    if engine is None and settings.llm:
        from app.llm import LLMCondenser, LLMEngine, make_chat_model

        model = make_chat_model(settings)  # picks the provider by name, or a ConfigError
        engine, condenser = LLMEngine(model, settings.llm), condenser or LLMCondenser(model)
    engine = engine or offline
    fallback = None if engine is offline else offline
    return Advisor(retriever.kb, retriever, engine, fallback=fallback, condenser=condenser)
