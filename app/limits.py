"""Load limits as ASGI middleware: per-client rate limits, a bounded gate and a time limit."""

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import AdvisorError, Overloaded, RateLimited, TimedOut

log = logging.getLogger(__name__)

API_PATHS = ("/api/ask",)
CHAT_PREFIXES = ("/slack/", "/mattermost/")
MAX_CLIENTS = 100_000  # buckets kept; the least recently seen client is forgotten first
OVERLOAD_RETRY_S = 1.0


class TokenBuckets:
    """One token bucket per client: `burst` requests at once, refilled at `per_minute`."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when `client` may go ahead (a token is spent), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.per_second)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.per_second
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


class Gate:
    """At most `slots` requests inside and `queue` waiting; safe across threads and loops."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self.active = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """How many requests wait for a slot."""
        return len(self._waiting)

    async def enter(self, timeout: float) -> None:
        """Take a slot, waiting in line up to `timeout` s; `Overloaded` if the line is full."""
        with self._lock:
            if self.active < self.slots:
                self.active += 1
                return
            if len(self._waiting) >= self.queue:
                raise Overloaded(
                    "The server is answering as many questions as it can; try again shortly.",
                    OVERLOAD_RETRY_S,
                )
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
        try:
            await asyncio.wait_for(turn, max(timeout, 0.0))
        except (TimeoutError, asyncio.CancelledError) as exc:
            with self._lock:
                handed = turn not in self._waiting
                if not handed:
                    self._waiting.remove(turn)
            if handed and turn.done() and not turn.cancelled():
                self.leave()  # the slot arrived just as we gave up: pass it on
            if isinstance(exc, TimeoutError):
                raise Overloaded(
                    f"No answering slot came free within {timeout:g} s; try again shortly.",
                    OVERLOAD_RETRY_S,
                ) from None
            raise

    def leave(self) -> None:
        """Give the slot to the next in line, or free it."""
        while True:
            with self._lock:
                if not self._waiting:
                    self.active -= 1
                    return
                turn = self._waiting.popleft()
            try:
                turn.get_loop().call_soon_threadsafe(self._hand_over, turn)
                return
            except RuntimeError:  # that waiter's event loop has closed: the next one
                continue

    def _hand_over(self, turn: asyncio.Future[None]) -> None:
        if turn.cancelled():
            self.leave()  # its waiter gave up after it was picked
        else:
            turn.set_result(None)


def limited_group(path: str) -> str | None:
    """Which rate limit a path falls under: "api", "chat", or None (health, UI, docs)."""
    if path in API_PATHS:
        return "api"
    if path.startswith(CHAT_PREFIXES):
        return "chat"
    return None


class Limits:
    """Per-client rate, then a slot within `timeout` s (503), then a reply within it (504)."""

    # A request past its time limit gets its 504 at once, but its worker thread cannot be
    # stopped: it keeps its slot until it finishes, so the gate still bounds the work.

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        refuse: Callable[[AdvisorError], Response],
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.refuse = refuse
        self.timeout = settings.request_timeout_s
        self.gate = gate or Gate(settings.max_concurrent, settings.max_queue)
        self.buckets: dict[str, TokenBuckets] = {}
        for group, rate, burst in (
            ("api", settings.rate_limit_per_minute, settings.rate_limit_burst),
            ("chat", settings.chat_rate_limit_per_minute, settings.chat_rate_limit_burst),
        ):
            if rate > 0:
                self.buckets[group] = TokenBuckets(rate, burst)
        self._detached: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        group = limited_group(scope["path"]) if scope["type"] == "http" else None
        if group is None:
            await self.app(scope, receive, send)
            return
        try:
            self._check_rate(group, scope)
            await self.gate.enter(self.timeout)
        except AdvisorError as exc:
            await self.refuse(exc)(scope, receive, send)
            return
        # The clock restarts with the slot: an LLM gets its whole budget however long the line.
        await self._run(scope, receive, send)

    def _check_rate(self, group: str, scope: Scope) -> None:
        buckets = self.buckets.get(group)
        if buckets is None:
            return
        client = scope.get("client")
        wait = buckets.take(str(client[0]) if client else "unknown")
        if wait > 0:
            raise RateLimited(
                f"Too many requests from this client; try again in {math.ceil(wait)} s.", wait
            )

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = asyncio.Event()
        muted = False

        async def watched(message: Message) -> None:
            if muted:
                return
            if message["type"] == "http.response.start":
                began.set()
            await send(message)

        async def answer() -> None:
            await self.app(scope, receive, watched)

        task = asyncio.create_task(answer())
        # A done callback, not `finally`: it also runs for a task cancelled before it starts.
        task.add_done_callback(lambda _: self.gate.leave())
        started = asyncio.create_task(began.wait())
        try:
            await asyncio.wait(
                {task, started}, timeout=max(self.timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            started.cancel()
        if began.is_set() or task.done():
            await task
            return
        muted = True
        self._detached.add(task)
        task.add_done_callback(self._forget)
        await self.refuse(
            TimedOut(
                f"Answering took longer than the {self.timeout:g} s time limit; "
                "try again in a moment."
            )
        )(scope, receive, send)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._detached.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("A request that ran past its time limit failed: %r", task.exception())


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
