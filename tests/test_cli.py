"""`advisor ask` (text, --json, --jsonl) and its bad inputs, through the real chain."""

import io
import json
import sys

import pytest

from app.cli import main
from app.config import Settings, get_settings


@pytest.fixture
def cli_env(kb_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ADVISOR_CORPUS_DIR", str(kb_settings.corpus_dir))
    monkeypatch.setenv("ADVISOR_INDEX_DIR", str(kb_settings.index_dir))
    get_settings.cache_clear()
    return kb_settings


def test_ask_prints_verdict_answer_and_sources(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "Node or Python for a chat app?"]) == 0
    out = capsys.readouterr().out
    assert "Verdict: Node.js" in out
    assert "[1] Use Case Decision Matrix" in out


def test_ask_json_is_one_answer_object(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "--json", "which ORMs does the article list for Node?"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["verdict"] is None
    assert "Prisma" in answer["answer"]
    assert answer["citations"][0]["quote"]
    assert set(answer["timings_ms"]) == {"condense", "retrieve", "answer", "total"}


def test_ask_jsonl_answers_each_line_and_reports_bad_ones(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        json.dumps({"question": "Python or Node for ETL?"}),
        "{not json",
        json.dumps(
            {
                "question": "and what about GraphQL?",
                "history": [{"role": "user", "content": "Node or Python for ETL?"}],
            }
        ),
        json.dumps({"question": "   "}),
        json.dumps({"question": "x", "history": [{"role": "robot", "content": "hi"}]}),
        json.dumps(["not", "an", "object"]),
    ]
    raw = ("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["ask", "--jsonl"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 7
    assert out[0]["verdict"] == "python"
    assert out[1] == {"error": out[1]["error"], "line": 2}
    assert out[2]["verdict"] == "tie"
    assert out[3]["line"] == 4 and "empty" in out[3]["error"]
    assert out[4]["line"] == 5 and "history" in out[4]["error"]
    assert out[5]["line"] == 6
    assert out[6] == {"error": "line is not UTF-8", "line": 7}


@pytest.mark.parametrize(
    ("question", "message"),
    [("   ", "empty"), ("x" * 2001, "2000"), ("bell\x07 here", "control characters")],
)
def test_ask_refuses_bad_questions_with_one_line(
    question: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", question]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ask_builds_a_missing_index_first(
    fresh_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model_cache: object,
) -> None:
    monkeypatch.setenv("ADVISOR_CORPUS_DIR", str(fresh_settings.corpus_dir))
    monkeypatch.setenv("ADVISOR_INDEX_DIR", str(fresh_settings.index_dir))
    get_settings.cache_clear()
    assert main(["ask", "--json", "graphql: node or python?"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["verdict"] == "tie"
    assert "Index rebuilt" in captured.err
