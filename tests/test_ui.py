"""The chat page: answer rendering, streaming, history, errors, votes and the KB tab."""

import itertools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pytest
from conftest import make_settings
from fastapi import FastAPI

from app import ui
from app.answer import Answer, AskRequest, Citation
from app.chunking import Chunk, chunk_corpus
from app.corpus import load_corpus
from app.errors import AdvisorError, BadRequest
from app.feedback import FeedbackStore
from app.ui import Session, chat, knowledge_base_markdown, record_vote, render_answer

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
XSS = '<script>alert(1)</script><img src=x onerror="alert(1)">'


def make_answer(**changes: object) -> Answer:
    values: dict[str, object] = {
        "question": "Node or Python for a real-time chat app?",
        "standalone_question": "Node or Python for a real-time chat app?",
        "verdict": "node",
        "strength": "clear",
        "answer": "**Node.js** — the event loop handles WebSockets well [1]. Also fast [2].",
        "citations": [
            Citation(
                n=1,
                chunk_id="c1",
                source="node-vs-python-2026.md",
                section="Use Case Decision Matrix",
                quote="Winner: Node.js. Reason: Event loop handles WebSocket connections",
            ),
            Citation(
                n=2,
                chunk_id="c2",
                source="node-vs-python-2026.md",
                section="Performance Comparison",
                quote="Node.js has an edge here",
            ),
        ],
        "engine": "fake",
        "kb_version": "kb-test",
    }
    return Answer.model_validate(values | changes)


@dataclass
class FakeKB:
    chunks: list[Chunk]
    kb_version: str = "kb-test"


class FakeAdvisor:
    """Answers every question with `reply` (or raises it), recording each request."""

    def __init__(self, reply: Answer | Exception | None = None) -> None:
        self.kb = FakeKB(chunk_corpus(load_corpus(CORPUS)))
        self.reply = reply
        self.requests: list[AskRequest] = []

    def ask(self, request: AskRequest) -> Answer:
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        answer = self.reply or make_answer()
        return answer.model_copy(update={"question": request.question})


@pytest.fixture(autouse=True)
def _no_stream_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui, "STREAM_DELAY_S", 0.0)


def make_app(tmp_path: Path, advisor: object | None) -> FastAPI:
    app = FastAPI()
    app.state.settings = make_settings(tmp_path)
    app.state.advisor = advisor
    app.state.feedback = FeedbackStore(tmp_path / "feedback.sqlite3")
    return app


def run(app: FastAPI, question: str, session: Session) -> list[list[dict[str, str]]]:
    return [list(messages) for _, messages, _ in chat(app, question, session)]


# render_answer


def test_render_escapes_answer_sources_and_never_emits_raw_tags() -> None:
    answer = make_answer(
        answer=f"You asked {XSS} [1]",
        citations=[Citation(n=1, chunk_id="c", source="a<b>.md", section=XSS, quote=f"q {XSS}")],
    )
    html = render_answer(answer)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&lt;b&gt;.md" in html


@pytest.mark.parametrize(
    ("changes", "label", "css"),
    [
        ({"verdict": "node", "strength": "clear"}, ">Node.js<", "verdict-node"),
        ({"verdict": "python", "strength": "clear"}, ">Python<", "verdict-python"),
        ({"verdict": "tie", "strength": None}, ">Tie<", "verdict-tie"),
        ({"verdict": "node", "strength": "slight"}, ">Node.js (slight edge)<", "verdict-slight"),
        ({"verdict": None, "strength": None}, ">No verdict<", "verdict-none"),
        ({"verdict": None, "abstained": True, "citations": []}, ">No verdict<", "verdict-none"),
    ],
)
def test_badge_labels(changes: dict[str, object], label: str, css: str) -> None:
    html = render_answer(make_answer(**changes))
    first = html.split("\n\n")[0]
    assert first.startswith('<span class="verdict') and label in first and css in first


def test_markers_link_to_numbered_sources() -> None:
    html = render_answer(make_answer(answer="Node.js [1], fast [2], not cited [9]."))
    body, sources = html.split("\n\n")[1:]
    links = [part.split('"')[0] for part in body.split('href="#')[1:]]
    assert len(links) == 2 and links[0].endswith("-1") and links[1].endswith("-2")
    assert "[9]" in body and body.count("<a ") == 2  # no source 9: left as text
    for anchor in links:
        assert f'<li id="{anchor}">' in sources


def test_sources_sit_in_details_with_section_and_quote() -> None:
    html = render_answer(make_answer())
    sources = html.split("\n\n")[-1]
    assert sources.startswith('<details class="sources"><summary>2 sources</summary>')
    assert "Use Case Decision Matrix" in sources and "Node.js has an edge here" in sources
    assert "\n\n" not in sources  # one HTML block, left alone by Markdown


def test_no_sources_block_without_citations_or_while_streaming() -> None:
    assert "<details" not in render_answer(make_answer(citations=[], answer="Plain."))
    assert "<details" not in render_answer(make_answer(), partial="**Node.js** — the")


def test_anchor_ids_differ_between_answers() -> None:
    one, two = make_answer(), make_answer(question="another question")
    assert render_answer(one).split('id="')[1][:12] != render_answer(two).split('id="')[1][:12]


# build_ui and callbacks


def test_build_ui_returns_blocks(tmp_path: Path) -> None:
    demo = ui.build_ui(make_app(tmp_path, FakeAdvisor()))
    assert isinstance(demo, gr.Blocks)
    assert demo.title == ui.TITLE
    kinds = {type(b).__name__ for b in demo.blocks.values()}
    assert {"Chatbot", "Textbox", "State", "Markdown", "Tab"} <= kinds


def test_chat_streams_the_answer(tmp_path: Path) -> None:
    frames = run(make_app(tmp_path, FakeAdvisor()), "Node or Python for chat?", Session())
    assert frames[0][-1]["content"] == ui.THINKING
    bodies = [f[-1]["content"] for f in frames[1:]]
    assert len(bodies) > 3 and all(len(a) <= len(b) for a, b in itertools.pairwise(bodies))
    assert bodies[-1] == render_answer(make_answer(question="Node or Python for chat?"))
    assert frames[-1][0] == {"role": "user", "content": "Node or Python for chat?"}


def test_chat_passes_history_as_plain_text(tmp_path: Path) -> None:
    advisor = FakeAdvisor()
    app, session = make_app(tmp_path, advisor), Session()
    run(app, "Node or Python for chat?", session)
    run(app, "And for ML?", session)
    first, second = advisor.requests
    assert first.history == []
    assert [(t.role, t.content) for t in second.history] == [
        ("user", "Node or Python for chat?"),
        ("assistant", make_answer().answer),  # the Markdown, not the rendered HTML
    ]
    assert len(session.messages) == 4 and set(session.answers) == {1, 3}


def test_chat_escapes_the_question(tmp_path: Path) -> None:
    frames = run(make_app(tmp_path, FakeAdvisor()), XSS, Session())
    shown = frames[-1][0]["content"]
    assert "<" not in shown and shown.startswith("&lt;script&gt;")


@pytest.mark.parametrize(
    "error", [BadRequest("That question is malformed."), AdvisorError("The index is gone.")]
)
def test_chat_shows_errors_as_the_reply(tmp_path: Path, error: Exception) -> None:
    session = Session()
    frames = run(make_app(tmp_path, FakeAdvisor(error)), "Node or Python?", session)
    assert frames[-1][-1]["content"] == f"⚠️ {error}"
    assert session.turns == [] and session.answers == {}


def test_chat_refuses_bad_input_and_waits_for_the_advisor(tmp_path: Path) -> None:
    frames = run(make_app(tmp_path, FakeAdvisor()), "bad\x00question", Session())
    assert "control characters" in frames[-1][-1]["content"]
    frames = run(make_app(tmp_path, None), "Node or Python?", Session())
    assert "still loading" in frames[-1][-1]["content"]
    assert run(make_app(tmp_path, FakeAdvisor()), "   ", Session()) == [[]]


def like(index: int, liked: bool | str) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": ["..."], "liked": liked})


def test_like_stores_feedback(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, FakeAdvisor()), Session()
    run(app, "Node or Python for chat?", session)
    assert record_vote(app, session, like(1, True)) is not None
    assert record_vote(app, session, like(1, False)) is not None
    down, up = app.state.feedback.list()
    assert up["vote"] == "up" and down["vote"] == "down"
    assert up["question"] == "Node or Python for chat?"
    assert up["answer"] == make_answer().answer
    assert up["verdict"] == "node" and up["kb_version"] == "kb-test"
    assert up["created_at"].endswith("Z")


def test_like_ignores_what_is_not_an_answer(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, FakeAdvisor()), Session()
    run(app, "Node or Python for chat?", session)
    assert record_vote(app, session, like(0, True)) is None  # the user's own message
    assert record_vote(app, session, like(7, True)) is None
    assert record_vote(app, session, like(1, "")) is None  # a vote taken back
    assert app.state.feedback.count() == 0


def test_knowledge_base_tab_shows_tables_and_documents() -> None:
    text = knowledge_base_markdown(FakeAdvisor())
    assert "### Use case decision matrix" in text and "### Ecosystem comparison" in text
    assert "| Real-time apps (chat, gaming) | Node.js |" in text
    assert "| ORM | Prisma, TypeORM, Drizzle |" in text
    chunks = FakeAdvisor().kb.chunks
    assert "| node-vs-python-2026.md | Node.js vs Python" in text
    assert f"| {len(chunks)} |" in text
    assert "still loading" in knowledge_base_markdown(None)


def test_knowledge_base_tab_escapes_html_in_tables() -> None:
    advisor = FakeAdvisor()
    table = Chunk("t", "x.md", "S", "table", "S#table0", "| A |\n| --- |\n| <img src=x> & b |")
    advisor.kb = FakeKB([table])
    text = knowledge_base_markdown(advisor)
    assert "<img" not in text and "| &lt;img src=x&gt; &amp; b |" in text


def test_chat_keeps_working_after_an_answer_no_turn_could_hold(tmp_path: Path) -> None:
    # An LLM may answer with control characters or at any length; the next question must work.
    wild = make_answer(answer="Node.js\x00 \x1b[1m" + "x" * 30_000, citations=[])
    advisor = FakeAdvisor(wild)
    app, session = make_app(tmp_path, advisor), Session()
    run(app, "Node or \u202ePython\u202c for chat?", session)
    frames = run(app, "And for ML?", session)
    assert not frames[-1][-1]["content"].startswith("⚠️")
    user, assistant = advisor.requests[1].history
    assert user.content == "Node or Python for chat?"
    assert assistant.content.startswith("Node.js [1m") and len(assistant.content) == 20_000
