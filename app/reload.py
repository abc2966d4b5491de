"""Keeps a serving process in step with its index: notices when it is deleted, corrupt,
unreachable or rebuilt elsewhere, and swaps in a freshly loaded advisor without a restart."""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from app import store
from app.chain import Advisor
from app.errors import IndexUnavailable
from app.index import KnowledgeBase

CHECK_EVERY_S = 5.0  # a manifest read costs ~1 ms embedded and a round trip on a server
RETRY_EVERY_S = 1.0  # while the index is unavailable, try to reopen it at most this often

log = logging.getLogger(__name__)
_swap = threading.Lock()  # guards which advisor an app serves and which reloader owns it


class Reloader:
    """Hands out an app's advisor; checks its index cheaply and reloads it when needed."""

    # Every call stats the embedded database (microseconds); the manifest is read only when that
    # file changed or every `check_every` seconds; after any `IndexUnavailable` the next call
    # tries to reload, then at most every `retry_every` seconds until it works.

    def __init__(
        self,
        state: Any,
        check_every: float = CHECK_EVERY_S,
        retry_every: float = RETRY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state  # app.state: its `advisor` is replaced on reload
        self.advisor: Advisor = state.advisor
        self.check_every, self.retry_every, self.clock = check_every, retry_every, clock
        self.failure: str | None = None
        self.seen = self.advisor.kb.fingerprint
        now = clock()
        self.check_at, self.retry_at = now + check_every, now
        self._busy = threading.Lock()

    @property
    def settings(self) -> Any:
        """The settings the served index was loaded with."""
        return self.advisor.kb.settings

    def current(self) -> Advisor:
        """The advisor to answer with; `IndexUnavailable` (503) while its index is unusable."""
        now = self.clock()
        # Requests never queue behind a check or reload: they use what is there meanwhile.
        if self._due(now) and self._busy.acquire(blocking=False):
            try:
                self._refresh(now)
            finally:
                self._busy.release()
        advisor = self.advisor
        problem = self.failure or advisor.kb.failure
        if problem:
            raise IndexUnavailable(problem)
        return advisor

    def _due(self, now: float) -> bool:
        broken = self.failure is not None or self.advisor.kb.failure is not None
        if now >= (self.retry_at if broken else self.check_at):
            return True
        return store.fingerprint(self.settings) != self.seen  # written, deleted or replaced

    def _refresh(self, now: float) -> None:
        kb, settings = self.advisor.kb, self.settings
        self.seen = seen = store.fingerprint(settings)
        if not settings.chroma_host and seen is None:
            store.release(settings)  # the deleted database's handle (and its disk space)
            self._fail(
                now, f"No index at {store.chroma_path(settings)}: run `advisor index` to build it."
            )
            return
        replaced = seen is not None and seen[:2] != (kb.fingerprint or ())[:2]
        if self.failure is not None or kb.failure is not None or replaced:
            self._reload(now)
            return
        try:
            manifest = store.read_manifest(kb.client or store.open_client(settings), settings)
        except IndexUnavailable as exc:
            self._fail(now, str(exc))
            return
        if manifest is None:
            self._fail(
                now,
                f"The {store.describe(settings)} holds no Stack Advisor index: "
                "run `advisor index`.",
            )
        elif (manifest.get("kb_version"), manifest.get("collection")) != (
            kb.kb_version,
            kb.collection,
        ):
            self._reload(now)
        else:
            self.check_at = now + self.check_every

    def _reload(self, now: float) -> None:
        try:
            fresh = rebuild(self.advisor)
        except IndexUnavailable as exc:
            self._fail(now, str(exc))
            return
        except Exception as exc:  # a broken index must read as 503, never as a 500
            log.warning("Reloading the index failed", exc_info=True)
            self._fail(now, str(store.explain(self.settings, exc, "reloading the index")))
            return
        with _swap:
            self.advisor = self.state.advisor = fresh
        self.failure, self.seen = None, fresh.kb.fingerprint
        self.check_at = self.clock() + self.check_every
        log.warning("Reloaded knowledge base %s", fresh.kb.kb_version)

    def _fail(self, now: float, message: str) -> None:
        if message != self.failure:
            log.warning("Index unavailable: %s", message)
        self.failure, self.retry_at = message, now + self.retry_every


def rebuild(advisor: Advisor) -> Advisor:
    """A new advisor over the live index, keeping the old one's embeddings, condenser and any
    LLM engine; the offline engine is rebuilt, since it holds claims read from the old chunks."""
    from app.offline import OfflineEngine
    from app.runtime import build_advisor

    engine = None if isinstance(advisor.engine, OfflineEngine) else advisor.engine
    return build_advisor(
        advisor.kb.settings,
        embeddings=advisor.retriever.embeddings,
        engine=engine,
        condenser=advisor.condenser,
        refresh=False,
        quiet=True,
    )


def watched(state: Any) -> Advisor:
    """`state.advisor`, checked (and reloaded if needed) by the reloader kept on `state`."""
    advisor: Advisor = state.advisor
    if not isinstance(getattr(advisor, "kb", None), KnowledgeBase):
        return advisor  # a test double: no index to watch
    reloader: Reloader | None = getattr(state, "reloader", None)
    if reloader is None or reloader.advisor is not advisor:
        with _swap:  # a swap sets both together, so read them together
            reloader = getattr(state, "reloader", None)
            if reloader is None or reloader.advisor is not state.advisor:
                reloader = Reloader(state)  # a new app, or an advisor set from outside
                state.reloader = reloader
    return reloader.current()
