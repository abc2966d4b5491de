"""Follow-ups become standalone questions without a model (app/condense.py)."""

from app.answer import Turn
from app.condense import RuleCondenser


def turns(*pairs: tuple[str, str]) -> list[Turn]:
    return [Turn(role=role, content=content) for role, content in pairs]  # type: ignore[arg-type]


def test_no_history_leaves_the_question_alone() -> None:
    assert RuleCondenser().condense("why?", []) == "why?"


def test_a_follow_up_with_its_own_topic_is_asked_about_that_topic() -> None:
    history = turns(("user", "Node or Python for a realtime chat app?"))
    assert RuleCondenser().condense("and for a GraphQL API?", history) == (
        "Node.js or Python for a GraphQL API?"
    )


def test_a_follow_up_without_a_topic_leans_on_the_previous_question() -> None:
    history = turns(("user", "Is Node good for a chat server?"))
    for follow_up in ("what about the Python side?", "why?", "what about node for that?"):
        condensed = RuleCondenser().condense(follow_up, history)
        assert condensed.startswith("Is Node good for a chat server?"), condensed


def test_an_item_follow_up_is_asked_of_the_previous_topic_and_side() -> None:
    history = turns(
        ("user", "Node or Python for a standard CRUD REST API? We'll go with Python."),
    )
    condensed = RuleCondenser().condense("what framework would I use for that?", history)
    assert condensed == (
        "what framework would I use for a standard CRUD REST API on the Python side?"
    )


def test_another_language_is_its_own_question() -> None:
    history = turns(("user", "Node or Python for a chat app?"))
    assert RuleCondenser().condense("what about Go?", history) == "Node.js or Python for Go?"
