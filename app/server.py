"""One ASGI app: the JSON API, the chat tools' webhooks and the Gradio chat page."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import feedback, mattermost, slack
from app.answer import Answer, AskRequest
from app.chain import Advisor
from app.config import Settings, get_settings
from app.deps import current_advisor
from app.errors import (
    AdvisorError,
    BadRequest,
    Busy,
    ConfigError,
    CorpusError,
    IndexUnavailable,
    LLMUnavailable,
    ModelError,
    NotConfigured,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    TimedOut,
    Unauthorized,
)
from app.feedback import FeedbackStore
from app.limits import Gate, Limits, retry_after

MAX_BODY_BYTES = 64 * 1024

# Only the server maps errors to HTTP status codes.
STATUS: dict[type[AdvisorError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    PayloadTooLarge: 413,
    RateLimited: 429,
    Overloaded: 503,
    TimedOut: 504,
    NotConfigured: 503,
    IndexUnavailable: 503,
    CorpusError: 503,
    ModelError: 503,
    LLMUnavailable: 503,
    ConfigError: 500,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one error shape every route returns."""
    return {"error": {"code": code, "message": message}}


def status_for(exc: AdvisorError) -> int:
    """HTTP status for an error of the product's tree."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: AdvisorError) -> JSONResponse:
    """The JSON error for `exc`, with Retry-After when the refusal is about load."""
    headers = {"Retry-After": retry_after(exc.retry_after_s)} if isinstance(exc, Busy) else None
    return JSONResponse(error_body(exc.code, str(exc)), status_for(exc), headers=headers)


class BodyLimit:
    """Refuses bodies over the limit with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/gradio_api"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen, over, started = 0, False, False

        async def limited() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise PayloadTooLarge(f"Request body over {self.limit // 1024} KiB.")
            return message

        async def guarded(message: Any) -> None:
            nonlocal started
            if over and not started:
                return  # FastAPI answers a body it failed to read with a 400: send 413 instead
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except PayloadTooLarge:
            pass
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            error_body("payload_too_large", f"Request body over {self.limit // 1024} KiB."), 413
        )
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def create_app(
    settings: Settings | None = None, advisor: Advisor | None = None, ui: bool = True
) -> FastAPI:
    """The app; builds the advisor at start-up unless one is passed in (tests pass fakes)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.advisor is None:
            from app.runtime import build_advisor

            app.state.advisor = await run_in_threadpool(build_advisor, settings)
        yield

    app = FastAPI(
        title="Stack Advisor",
        version="0.1.0",
        description="Answers 'Node.js or Python for X?' from a local knowledge base.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.advisor = advisor
    app.state.feedback = FeedbackStore(settings.data_dir / "feedback.sqlite3")
    app.state.gate = Gate(settings.max_concurrent, settings.max_queue)  # answering slots
    _install_error_handlers(app)

    @app.post("/api/ask", response_model=Answer, tags=["answers"])
    def ask(request: AskRequest, http: Request) -> Answer:
        """Answer a question (with optional history) from the knowledge base."""
        return current_advisor(http).ask(request)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(http: Request) -> JSONResponse:
        """The index is loaded and answering; 503 with the reason otherwise."""
        try:
            advisor = current_advisor(http)
            advisor.retriever.retrieve(advisor.retriever.embed("readiness check"), 1)
        except AdvisorError as exc:
            return JSONResponse(error_body("not_ready", str(exc)), status_code=503)
        return JSONResponse({"status": "ready", "kb_version": advisor.kb.kb_version})

    app.include_router(feedback.router)
    app.include_router(slack.router)
    app.include_router(mattermost.router)
    if ui:
        import gradio as gr

        from app.ui import build_ui

        app = gr.mount_gradio_app(app, build_ui(app), path="/")
    # Added innermost first: CORS sees every response (refusals too), then the client's
    # real address is set, then the load limits, then the body limit.
    app.add_middleware(BodyLimit)
    app.add_middleware(Limits, settings=settings, refuse=error_response, gate=app.state.gate)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
        )
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AdvisorError)
    async def _advisor_error(_: Request, exc: AdvisorError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid request')}"
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if detail == "There was an error parsing the body":  # FastAPI's words: say how to fix
            detail = "The body cannot be parsed: send valid UTF-8 JSON, not nested hundreds deep."
        return JSONResponse(
            error_body(f"http_{exc.status_code}", detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
