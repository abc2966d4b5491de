"""What a question asks for: decision, listed items, or out of scope (app/intent.py)."""

import re

import pytest

from app.intent import asks_items, mentioned_sides, out_of_scope


@pytest.mark.parametrize(
    "question",
    [
        "go vs node for our microservices?",
        "Would rewriting the inference service in Rust be faster than keeping it in Python?",
        "Is Elixir with Phoenix Channels a better choice than Node for a realtime chat server?",
        "Half the team wants Java with Spring Boot, the rest C# on .NET 8. Which is better?",
        "Laravel vs Rails for a new SaaS?",
        "How do I add CORS middleware to a FastAPI app?",
        "getting ModuleNotFoundError: No module named 'fastapi', help??",
        "Error: listen EADDRINUSE: address already in use :::3000, how fix",
        "Which one is more secure for a backend, Node.js or Python?",
        "in germany, does a node developer earn more than a python developer?",
        "python or node for a small command line tool that renames files?",
    ],
)
def test_questions_the_article_cannot_answer_are_recognised(question: str) -> None:
    assert out_of_scope(question, {}, None) is not None


@pytest.mark.parametrize(
    ("question", "concepts"),
    [
        ("Should we go all-in on Node or Python for a chat app?", {"realtime": 1}),
        ("We're breaking our Rails monolith into 30 services. Node.js or Python?", {}),
        ("Node or Python for error handling in a REST API?", {"rest": 1}),
        ("How do I decide between Node and Python for ML serving?", {"ml": 1}),
        ("Node or Python for a secure real-time chat app?", {"realtime": 1}),
    ],
)
def test_in_scope_questions_are_not_refused(question: str, concepts: dict[str, int]) -> None:
    assert out_of_scope(question, concepts, None) is None


@pytest.mark.parametrize(
    "question",
    [
        "what would i use for background jobs / queues in node?",
        "which libraries on the Python side for a GraphQL API?",
        "Is there a Python equivalent of BullMQ?",
        "compare the package managers (and how many packages each has)",
        "List every framework the article recommends, for Node.js and for Python.",
        "grapql libs for python?",
        "node rest frameworks? just the names",
        "flask — what's it recommended for?",
        "If we go with Node, which ORM libraries are there?",
    ],
)
def test_item_questions_are_recognised(question: str) -> None:
    assert asks_items(question)


@pytest.mark.parametrize(
    "question",
    [
        "We're building the API behind a small public library's catalogue app: list books, "
        "add a book. Node or Python?",
        "basic crud api over postgres for internal tools, node or py?",
        "node vs python task queue workers pandas",
        "Which ORM is better, Node's or Python's?",
        "Is there a big difference for chat apps?",
    ],
)
def test_decisions_that_mention_item_words_stay_decisions(question: str) -> None:
    assert not asks_items(question)


def test_sides_are_named_in_a_fixed_order() -> None:
    assert mentioned_sides("python or node.js?") == ["node", "python"]
    assert mentioned_sides("what about django?") == ["python"]
    assert mentioned_sides("any thoughts?") == []


SIDES_OF = {"celery": {"python"}, "rq": {"python"}, "express": {"node"}, "fastapi": {"python"}}
LISTED = re.compile(r"(?<![\w.])(?:celery|rq|express|fastapi)(?![\w])", re.I)


@pytest.mark.parametrize(
    ("question", "refused"),
    [
        ("Celery vs RQ: which one loses fewer jobs when Redis restarts?", True),
        ("Is Express or FastAPI better for a CRUD API?", False),
        ("Celery or RQ, which should we use for our data-heavy background jobs?", False),
        ("Celery vs RQ, or should we go with Node for these jobs?", False),
    ],
)
def test_two_items_of_one_side_are_not_ranked(question: str, refused: bool) -> None:
    why = out_of_scope(question, {"jobs": 1}, LISTED, SIDES_OF)
    assert (why is not None) == refused, why


@pytest.mark.parametrize(
    "question",
    [
        "Give me a step-by-step plan to migrate our Flask app to FastAPI",
        "Is Socket.io compatible with HTTP/3?",
        "How much RAM does a Pandas DataFrame with 10 million rows use?",
        "Who created Node.js, and in what year?",
    ],
)
def test_details_the_article_never_gives_are_declined(question: str) -> None:
    assert out_of_scope(question, {"realtime": 1}, None) is not None
