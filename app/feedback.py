"""Thumbs up/down on answers, kept in SQLite, plus the JSON routes to add and read them."""

import builtins
import hmac
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from app.answer import Verdict
from app.config import Settings, is_loopback
from app.errors import AdvisorError, BadRequest, NotConfigured, Unauthorized

Vote = Literal["up", "down"]
MAX_PAGE = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    verdict TEXT,
    kb_version TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    comment TEXT
)
"""
_COLUMNS = "id, created_at, question, answer, verdict, kb_version, vote, comment"


class FeedbackStore:
    """Votes in one SQLite file (WAL, fsync on commit); opens a connection per call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def add(
        self,
        question: str,
        answer: str,
        verdict: str | None,
        kb_version: str,
        vote: str,
        comment: str | None = None,
    ) -> int:
        """Store one vote with a UTC timestamp; its id once it is durably committed."""
        if vote not in ("up", "down"):
            raise BadRequest(f"vote must be 'up' or 'down', not {vote!r}.")
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        row = (created, question, answer, verdict, kb_version, vote, comment)
        with self._connect() as conn:
            cur = self._run(
                conn,
                "INSERT INTO feedback (created_at, question, answer, verdict, kb_version, vote,"
                " comment) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

    def count(self) -> int:
        """How many votes are stored."""
        with self._connect() as conn:
            return int(self._run(conn, "SELECT COUNT(*) FROM feedback").fetchone()[0])

    def list(self, limit: int = 50, offset: int = 0) -> builtins.list[dict[str, Any]]:
        """Votes newest first, `limit` at a time from `offset`."""
        with self._connect() as conn:
            cur = self._run(
                conn,
                f"SELECT {_COLUMNS} FROM feedback ORDER BY id DESC LIMIT ? OFFSET ?",
                (max(0, limit), max(0, offset)),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _connect(self) -> closing[sqlite3.Connection]:
        self._ensure()
        return closing(self._open())

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            # FULL: the WAL is fsynced on every commit, so an acknowledged vote survives a crash.
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return conn

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AdvisorError(
                    f"Cannot create the feedback directory {self.path.parent} "
                    f"({exc.strerror or exc}): fix its permissions or set ADVISOR_DATA_DIR."
                ) from None
            with closing(self._open()) as conn:
                mode = self._run(conn, "PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise AdvisorError(
                        f"The feedback database {self.path} cannot use WAL mode (got {mode}): "
                        "put ADVISOR_DATA_DIR on a local disk."
                    )
                self._run(conn, _SCHEMA)
            self._ready = True

    def _run(self, conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> AdvisorError:
        reason = str(exc) or type(exc).__name__
        lowered = reason.lower()
        if isinstance(exc, sqlite3.OperationalError) and any(
            s in lowered for s in ("unable to open", "readonly", "read-only", "disk i/o", "locked")
        ):
            return AdvisorError(
                f"The feedback database {self.path} cannot be written ({reason}): check the "
                "permissions and free space of its directory, or set ADVISOR_DATA_DIR."
            )
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return AdvisorError(
                f"The feedback database {self.path} is corrupt ({reason}): move it aside; "
                "a new one is created on the next vote."
            )
        return AdvisorError(f"The feedback database {self.path} failed ({reason}).")


class FeedbackIn(BaseModel):
    """A vote sent by an API client."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000)
    answer: str = Field(max_length=20_000)
    verdict: Verdict | None = None
    kb_version: str = Field(max_length=100)
    vote: Vote
    comment: str | None = Field(default=None, max_length=2000)


_bearer = HTTPBearer(auto_error=False, description="The admin token, ADVISOR_ADMIN_TOKEN.")


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The admin token when one is set; without one, only a loopback-bound server is open."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        if is_loopback(settings.host):
            return
        raise NotConfigured(
            f"/api/feedback is closed while the server listens on {settings.host} without an "
            "admin token: set ADVISOR_ADMIN_TOKEN and send it as 'Authorization: Bearer TOKEN'."
        )
    expected = settings.admin_token.get_secret_value().encode()
    given = (credentials.credentials if credentials else "").encode()
    if not hmac.compare_digest(given, expected):
        raise Unauthorized(
            "/api/feedback needs the admin token: send 'Authorization: Bearer TOKEN' with the "
            "value of ADVISOR_ADMIN_TOKEN."
        )


# The chat page stores its votes through FeedbackStore directly, so this guard never
# blocks a thumbs up or down; it keeps the stored questions and answers from strangers.
router = APIRouter(tags=["feedback"], dependencies=[Depends(require_admin)])


def _store(request: Request) -> FeedbackStore:
    store: FeedbackStore = request.app.state.feedback
    return store


@router.get("/api/feedback")
def list_feedback(
    request: Request,
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=2**63 - 1),  # SQLite's largest integer
) -> dict[str, Any]:
    """Stored votes, newest first."""
    store = _store(request)
    return {
        "items": store.list(limit, offset),
        "total": store.count(),
        "limit": limit,
        "offset": offset,
    }


@router.post("/api/feedback", status_code=201)
def add_feedback(body: FeedbackIn, request: Request) -> dict[str, Any]:
    """Store a vote on an answer; returns its id."""
    new_id = _store(request).add(
        body.question, body.answer, body.verdict, body.kb_version, body.vote, body.comment
    )
    return {"id": new_id}
