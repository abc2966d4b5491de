"""`advisor serve`: index first if needed, load once, then uvicorn with graceful shutdown."""

import sys

from app.config import Settings


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Run the app until SIGINT/SIGTERM; uvicorn drains in-flight requests before exiting."""
    import uvicorn

    from app.runtime import build_advisor
    from app.server import create_app

    host = host or settings.host
    port = port or settings.port
    advisor = build_advisor(settings)  # builds a missing or stale index, loads models once
    app = create_app(settings, advisor=advisor)
    print(
        f"Stack Advisor is up: http://{host}:{port}/  (API docs: /docs)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    uvicorn.Server(config).run()
    return 0
