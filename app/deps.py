"""What every route reads from the app: the advisor, kept in step with its index."""

from typing import Any

from fastapi import Request

from app.chain import Advisor
from app.errors import IndexUnavailable
from app.reload import watched


def current_advisor(request: Request) -> Advisor:
    """The app's advisor; `IndexUnavailable` (503) while it loads or its index is unusable."""
    return live_advisor(request.app)


def live_advisor(app: Any) -> Advisor:
    """The advisor of `app` (a FastAPI app), reloaded first if its index changed or broke."""
    if app.state.advisor is None:
        raise IndexUnavailable("The knowledge base is still loading; try again in a moment.")
    return watched(app.state)
