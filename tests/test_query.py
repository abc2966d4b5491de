"""Topic concepts in a question (app/query.py): negation and near-miss words."""

import pytest

from app.query import concepts_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nothing fancy: no machine learning, no live updates. just endpoints", {"rest"}),
        ("None of them do machine learning; they are small services", {"microservices"}),
        ("I am not building a chat app, just a REST API", {"rest"}),
        ("Not sure which is better for real-time chat", {"realtime"}),
        ("very little computation per request, it mostly waits on the database", {"io"}),
    ],
)
def test_negated_mentions_do_not_count(text: str, expected: set[str]) -> None:
    assert set(concepts_of(text)) == expected


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        (
            "we break the rest of the system into lots of small independently deployed services",
            "microservices",
        ),
        ("a mesh of about 25 small Python services", "microservices"),
        (
            "apps fetch nested data in one round trip with only the fields each screen needs",
            "graphql",
        ),
        ("Want to write the UI and the server in one single language", "fullstack"),
        ("is it worth running our own benchmark first?", "perf"),
    ],
)
def test_everyday_wording_finds_the_topic(text: str, concept: str) -> None:
    assert concept in concepts_of(text)


def test_words_that_only_look_like_a_topic_do_not_count() -> None:
    assert "rest" not in concepts_of("and the rest of the team")
    assert "etl" not in concepts_of("each service has its own pipeline and image")
    assert "realtime" not in concepts_of("services talk over a message bus")
    assert "fullstack" not in concepts_of("we're choosing one language for this whole flow")
