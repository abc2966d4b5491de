"""Answers that list the article's items (app/facts.py), through the real chain."""

import pytest

from app.chain import Advisor
from app.claims import extract
from app.facts import listed_items


def test_listed_items_are_the_named_libraries_not_their_ratings(advisor: Advisor) -> None:
    _, facts = extract(advisor.kb.chunks)
    pattern = listed_items(facts)
    assert pattern is not None
    for name in (
        "BullMQ",
        "Django ORM",
        "Socket.io",
        "TensorFlow.js",
        "npm",
        "Hono",
        "Apollo Server",
    ):
        assert pattern.search(f"what about {name}?"), name
    for rating in ("Limited", "Basic", "Best-in-class", "Excellent"):
        assert not pattern.fullmatch(rating), rating


@pytest.mark.parametrize(
    ("question", "present", "absent"),
    [
        ("Is there a Python equivalent of BullMQ?", ["Celery", "RQ", "Dramatiq"], ["BullMQ"]),
        ("Is there a Python counterpart to Prisma?", ["SQLAlchemy"], ["Prisma"]),
        ("grapql libs for pyhton?", ["Strawberry", "Graphene"], ["Apollo"]),
        ("compare the package managers", ["npm", "pip"], []),
        ("What does the article say Hono is good for?", ["lightweight"], ["Django"]),
        (
            "List every framework the article recommends, for Node.js and for Python.",
            ["Fastify", "NestJS", "Express", "Hono", "FastAPI", "Django", "Flask"],
            [],
        ),
    ],
)
def test_item_questions_list_what_the_article_lists(
    advisor: Advisor, question: str, present: list[str], absent: list[str]
) -> None:
    answer = advisor.ask(question)
    assert answer.verdict is None and not answer.abstained, answer.answer
    for word in present:
        assert word in answer.answer, (word, answer.answer)
    for word in absent:
        assert word not in answer.answer, (word, answer.answer)
    for citation in answer.citations:
        assert citation.quote in advisor.kb.by_id[citation.chunk_id].text
