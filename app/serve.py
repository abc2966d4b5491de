"""`advisor serve`: index first if needed, load once, then uvicorn with graceful shutdown."""

import logging
import signal
import sys
from types import FrameType

from app.config import Settings, is_loopback

GRACE_S = 10  # in-flight requests get this long to finish after SIGTERM


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Run the app until SIGINT/SIGTERM; in-flight requests finish, then exit 0 on SIGTERM."""
    import uvicorn

    from app.runtime import build_advisor
    from app.server import create_app

    # The routes check the address actually bound (e.g. /api/feedback beyond loopback).
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    advisor = build_advisor(settings)  # builds a missing or stale index, loads models once
    app = create_app(settings, advisor=advisor)
    if not is_loopback(settings.host) and settings.admin_token is None:
        print(
            f"warning: listening on {settings.host} without ADVISOR_ADMIN_TOKEN: "
            "/api/feedback answers 503 until it is set.",
            file=sys.stderr,
        )
    print(
        f"Stack Advisor is up: http://{settings.host}:{settings.port}/  (API docs: /docs)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACE_S,
        access_log=settings.log_level in ("info", "debug"),
        # The app reads X-Forwarded-For itself, from ADVISOR_TRUSTED_PROXIES only.
        proxy_headers=False,
        server_header=False,
    )
    # uvicorn re-raises SIGTERM once it has drained, which would kill us with status 143;
    # a handler that does nothing turns that into a clean exit.
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do."""
