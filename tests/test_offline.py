"""The offline engine on held-out questions (tests/questions.yaml), never the tuning set."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import MATRIX_ROW_KEYS

from app.answer import Answer
from app.chain import Advisor

QUESTIONS = yaml.safe_load((Path(__file__).parent / "questions.yaml").read_text())["items"]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [q for q in QUESTIONS if q["kind"] == kind]


def ask(advisor: Advisor, item: dict[str, Any]) -> Answer:
    return advisor.ask({"question": item["question"], "history": item.get("history") or []})


def assert_grounded(advisor: Advisor, answer: Answer) -> None:
    """Every quote is verbatim in its chunk and every marker points to a listed citation."""
    numbers = {c.n for c in answer.citations}
    for c in answer.citations:
        assert c.quote in advisor.kb.by_id[c.chunk_id].text, c
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", answer.answer)}
    assert markers <= numbers, (markers, numbers, answer.answer)
    assert numbers <= markers, "a citation no sentence uses"


@pytest.mark.parametrize("row", MATRIX_ROW_KEYS)
def test_each_matrix_row_gets_its_verdict_and_is_cited(advisor: Advisor, row: str) -> None:
    items = [q for q in of_kind("row") if q["gold_rows"][0] == row]
    assert len(items) >= 3
    for item in items:
        answer = ask(advisor, item)
        assert answer.verdict == item["expected_verdict"], (item["question"], answer.answer)
        cited_rows = {
            advisor.kb.by_id[c.chunk_id].metadata.get("row_key") for c in answer.citations
        }
        assert row in cited_rows, (item["question"], answer.answer)
        assert_grounded(advisor, answer)


def test_microservices_is_a_slight_edge(advisor: Advisor) -> None:
    answer = advisor.ask("Node or Python when splitting a backend into many small services?")
    assert (answer.verdict, answer.strength) == ("node", "slight")
    assert "slight" in answer.answer


@pytest.mark.parametrize("item", of_kind("prose"), ids=lambda q: q["id"])
def test_prose_decided_questions(advisor: Advisor, item: dict[str, Any]) -> None:
    answer = ask(advisor, item)
    assert answer.verdict == item["expected_verdict"], answer.answer
    assert not answer.abstained
    assert_grounded(advisor, answer)


@pytest.mark.parametrize("item", of_kind("factual"), ids=lambda q: q["id"])
def test_factual_questions_list_the_items(advisor: Advisor, item: dict[str, Any]) -> None:
    answer = ask(advisor, item)
    assert answer.verdict is None and not answer.abstained
    for keyword in item["keywords"]:
        assert keyword.lower() in answer.answer.lower(), (keyword, answer.answer)
    assert answer.citations
    assert_grounded(advisor, answer)


@pytest.mark.parametrize("item", of_kind("out_of_scope"), ids=lambda q: q["id"])
def test_out_of_scope_is_declined(advisor: Advisor, item: dict[str, Any]) -> None:
    answer = ask(advisor, item)
    assert answer.abstained and answer.verdict is None, answer.answer
    assert_grounded(advisor, answer)
    assert "doesn't cover" in answer.answer and "Nearest topics" in answer.answer


@pytest.mark.parametrize("item", of_kind("injection"), ids=lambda q: q["id"])
def test_injection_does_not_change_the_verdict(advisor: Advisor, item: dict[str, Any]) -> None:
    answer = ask(advisor, item)
    assert answer.verdict == item["expected_verdict"], answer.answer
    if item.get("expect_abstain"):
        assert answer.abstained
    assert_grounded(advisor, answer)


@pytest.mark.parametrize("item", of_kind("followup"), ids=lambda q: q["id"])
def test_followups_use_the_conversation(advisor: Advisor, item: dict[str, Any]) -> None:
    answer = ask(advisor, item)
    assert answer.verdict == item["expected_verdict"], (answer.standalone_question, answer.answer)
    assert_grounded(advisor, answer)


def test_background_jobs_followup_is_rewritten(advisor: Advisor) -> None:
    history = [{"role": "user", "content": "Node or Python for a chat app?"}]
    answer = advisor.ask(
        {"question": "and what about data-heavy background jobs?", "history": history}
    )
    assert "background jobs" in answer.standalone_question
    assert answer.verdict == "python"


def test_greeting_is_not_rewritten_without_history(advisor: Advisor) -> None:
    answer = advisor.ask("hello!")
    assert answer.standalone_question == "hello!"
    assert answer.abstained


def test_team_condition_for_a_rest_api_is_named_and_cited(advisor: Advisor) -> None:
    answer = advisor.ask("Node or Python for a standard REST API with CRUD endpoints?")
    assert answer.verdict == "tie"
    team = next(s for s in re.split(r"(?<=\.)\s+", answer.answer) if "team" in s)
    assert re.search(r"\[\d+\]", team), answer.answer
    assert_grounded(advisor, answer)


def test_a_condition_the_question_brings_up_is_stated(advisor: Advisor) -> None:
    answer = advisor.ask("Node or Python for a real-time chat app that also serves ML models?")
    assert answer.verdict == "node"
    assert "What could change this" in answer.answer
    assert any("ML models" in c.quote for c in answer.citations)
    assert_grounded(advisor, answer)


def test_a_passing_or_negated_mention_brings_no_condition(advisor: Advisor) -> None:
    for question in (
        "Node or Python for a real-time chat app? No machine learning involved.",
        "Node or Python for live multiplayer game servers with chat, lobbies and presence "
        "for our AI-themed trivia game?",
    ):
        answer = advisor.ask(question)
        assert answer.verdict == "node"
        assert "could change" not in answer.answer, answer.answer
        assert len(answer.citations) == 1


def test_answers_are_short_and_carry_metadata(advisor: Advisor) -> None:
    answer = advisor.ask("Python or Node for an ETL pipeline?")
    sentences = [s for s in re.split(r"(?<=[.!?”])\s+(?=[A-Z*“])", answer.answer) if s]
    assert 2 <= len(sentences) <= 5, answer.answer
    assert answer.engine == "offline"
    assert answer.kb_version == advisor.kb.kb_version
    assert answer.timings_ms.total >= answer.timings_ms.retrieve > 0
