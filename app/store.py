"""Chroma access: an embedded `PersistentClient` under `index/`, or a shared Chroma server."""

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import IndexUnavailable

MANIFEST_ID = "manifest"
_FORMAT = 1
CONNECT_TIMEOUT_S = 2.0  # a stopped or unroutable Chroma server fails fast
READ_TIMEOUT_S = 30.0  # chromadb's own client waits forever

_lock = threading.Lock()
_http_clients: dict[tuple[str, int], Any] = {}  # chromadb makes a new system per HttpClient
_opened: dict[str, tuple[int, int] | None] = {}  # path -> identity of the sqlite file opened


def chroma_path(settings: Settings) -> Path:
    """Directory of the embedded Chroma database."""
    return settings.index_dir / "chroma"


def describe(settings: Settings) -> str:
    """Where the index lives, for messages."""
    if settings.chroma_host:
        return f"Chroma server at {settings.chroma_host}:{settings.chroma_port}"
    return f"index at {chroma_path(settings)}"


def open_client(settings: Settings, create: bool = False) -> Any:
    """A Chroma client for the configured index; `IndexUnavailable` with a fix if it fails."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        return _http_client(settings, chroma_settings)
    path = chroma_path(settings)
    if not create and not (path / "chroma.sqlite3").is_file():
        raise IndexUnavailable(f"No index at {path}: run `advisor index` to build it.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with _lock:
            if str(path) in _opened and _opened[str(path)] != _identity(path):
                _forget_cached_system(path)  # deleted or replaced since: drop the dead handle
            client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            _opened[str(path)] = _identity(path)
        return client
    except Exception as exc:
        raise IndexUnavailable(
            f"The {describe(settings)} is corrupt or unreadable ({first_line(exc)}): "
            "run `advisor index --rebuild`."
        ) from None


def _http_client(settings: Settings, chroma_settings: Any) -> Any:
    """One client per server for the process: a cheap TCP check first, then a cached client."""
    import chromadb
    import httpx

    host, port = str(settings.chroma_host), settings.chroma_port
    try:  # chromadb's own connect has no timeout: fail fast and clearly here instead
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise IndexUnavailable(unreachable(settings, first_line(exc))) from None
    with _lock:
        client = _http_clients.get((host, port))
        if client is not None:
            return client
        try:
            client = chromadb.HttpClient(host=host, port=port, settings=chroma_settings)
        except Exception as exc:  # chromadb wraps connection errors in several types
            raise IndexUnavailable(unreachable(settings, first_line(exc))) from None
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        _http_clients[(host, port)] = client
        return client


def unreachable(settings: Settings, reason: str) -> str:
    """The message for a Chroma server that does not answer."""
    return (
        f"{describe(settings)} is unreachable ({reason}): is it running? Start it with "
        f"`chroma run --path DIR --port {settings.chroma_port}` or unset ADVISOR_CHROMA_HOST."
    )


def explain(settings: Settings, exc: Exception, doing: str) -> IndexUnavailable:
    """`IndexUnavailable` for any Chroma failure while `doing` something, with its fix."""
    import httpx

    reason = first_line(exc)
    if settings.chroma_host and (
        isinstance(exc, httpx.TransportError | OSError) or "could not connect" in reason.lower()
    ):
        return IndexUnavailable(unreachable(settings, reason))
    if _is_not_found(exc):
        return IndexUnavailable(
            f"A collection was replaced or deleted on the {describe(settings)} while {doing} "
            f"({reason}): try again, and run `advisor index` if it persists."
        )
    fix = "check its log" if settings.chroma_host else "it may be corrupt"
    return IndexUnavailable(
        f"{doing[:1].upper()}{doing[1:]} failed on the {describe(settings)} ({reason}): {fix}; "
        "run `advisor index --rebuild`."
    )


def fingerprint(settings: Settings) -> tuple[int, int, int, int] | None:
    """(device, inode, mtime, size) of the embedded database; None when missing or a server."""
    # Reads never change it, every write does, and a rebuilt or restored index has a new inode.
    return None if settings.chroma_host else _stat(chroma_path(settings))


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        stat = (path / "chroma.sqlite3").stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def _identity(path: Path) -> tuple[int, int] | None:
    stat = _stat(path)
    return None if stat is None else stat[:2]


def release(settings: Settings) -> None:
    """Let go of an embedded database that was deleted or replaced under this process."""
    path = chroma_path(settings)
    with _lock:
        if not settings.chroma_host and _identity(path) is None:  # not rebuilt meanwhile
            _forget_cached_system(path)


def quarantine(settings: Settings) -> Path | None:
    """Move a corrupt embedded index aside (never delete it) so a rebuild can start clean."""
    path = chroma_path(settings)
    if settings.chroma_host or not path.exists():
        return None
    target = path.with_name(f"chroma.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    with _lock:
        _forget_cached_system(path)
    shutil.move(str(path), str(target))
    return target


def _forget_cached_system(path: Path) -> None:
    """Drop chroma's per-process handle on the database at `path`.

    chromadb keeps one system per path for the life of the process, so without this a client
    opened after the move would still use the corrupt database's handle.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    _opened.pop(str(path), None)
    system = SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)
    if system is not None:
        try:
            system.stop()
        except Exception:  # it is being discarded; a failed stop changes nothing
            pass


def meta_name(settings: Settings) -> str:
    """Name of the small collection holding the manifest (the pointer to the live collection)."""
    return f"{settings.collection}-meta"


def read_manifest(client: Any, settings: Settings) -> dict[str, Any] | None:
    """The manifest of the live index, or None if there is none (or it is foreign)."""
    try:
        meta = client.get_collection(meta_name(settings))
        got = meta.get(ids=[MANIFEST_ID], include=["documents"])
    except Exception as exc:
        if _is_not_found(exc):
            return None
        raise explain(settings, exc, "reading the manifest") from None
    docs = got.get("documents") or []
    if not docs or not docs[0]:
        return None
    try:
        manifest = json.loads(docs[0])
    except ValueError:
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        return None
    return manifest


def write_manifest(client: Any, settings: Settings, manifest: dict[str, Any]) -> None:
    """Switch the live index over to `manifest["collection"]` in one write."""
    meta = client.get_or_create_collection(meta_name(settings))
    meta.upsert(
        ids=[MANIFEST_ID],
        documents=[json.dumps({**manifest, "format": _FORMAT})],  # chunks in corpus order
        embeddings=[[0.0, 0.0]],  # chroma wants a vector; ours is never searched
        metadatas=[{"collection": manifest["collection"]}],
    )


def data_collections(client: Any, settings: Settings) -> list[str]:
    """Names of every chunk collection this app has made (live, old or half-built)."""
    prefix = f"{settings.collection}-v"
    names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
    return [n for n in names if n.startswith(prefix)]


def _is_not_found(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "notfound" in text or "does not exist" in text or "not found" in text


def first_line(exc: Exception) -> str:
    """The first line of an error message, capped, for one-line reports."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
