"""What every route reads from the app: the advisor loaded at start-up."""

from fastapi import Request

from app.chain import Advisor
from app.errors import IndexUnavailable


def current_advisor(request: Request) -> Advisor:
    """The advisor loaded at start-up; `IndexUnavailable` (503) until it is there."""
    advisor: Advisor | None = request.app.state.advisor
    if advisor is None:
        raise IndexUnavailable("The knowledge base is still loading; try again in a moment.")
    return advisor
