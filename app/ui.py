"""The Gradio chat page: streamed answers with a verdict badge, numbered sources and votes."""

import hashlib
import html
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from fastapi import FastAPI

from app.answer import (
    MAX_HISTORY_TURNS,
    MAX_TURN_CHARS,
    Answer,
    AskRequest,
    Turn,
    clean_question,
    printable,
)
from app.deps import live_advisor
from app.errors import AdvisorError

log = logging.getLogger(__name__)

TITLE = "Stack Advisor — Node.js or Python?"
THINKING = "_Looking it up in the knowledge base…_"
STREAM_DELAY_S = 0.02  # lets each prefix reach the browser as its own frame
MAX_KEPT_ANSWERS = 100
EXAMPLES = [
    "Node or Python for a real-time chat app?",
    "Node or Python for ML model serving?",
    "Should I use Node.js or Python for data pipelines / ETL?",
    "Node or Python for microservices?",
    "Node or Python for a standard CRUD REST API?",
    "Which ORMs does the article list for Node.js?",
    "What job queues are there for Python?",
    "Node or Python for a GraphQL API?",
]
CSS = """
.verdict { display: inline-block; padding: 0.1em 0.7em; border-radius: 999px;
  font-weight: 600; font-size: 0.9em; border: 1px solid transparent; }
.verdict-node { background: #e6f4ea; color: #1e6b34; border-color: #9fd3ae; }
.verdict-python { background: #e8f0fe; color: #1a4f9c; border-color: #a8c3f0; }
.verdict-tie { background: #f1f3f4; color: #3c4043; border-color: #c8ccd0; }
.verdict-none { background: #fef7e0; color: #7a5a00; border-color: #f0d58c; }
.verdict-slight { border-style: dashed; }
/* !important: Gradio's chat message styles are more specific than these. */
.prose a.cite { text-decoration: none !important; font-size: 0.85em; font-weight: 600;
  color: var(--color-accent, #ea580c) !important; }
details.sources { margin-top: 0.6em; font-size: 0.92em; }
details.sources summary { cursor: pointer; font-weight: 600; }
.prose details.sources ul { list-style: none; padding-left: 0; margin: 0.4em 0 0 0; }
.prose details.sources li { margin: 0 0 0.5em 0; }
.prose details.sources blockquote { margin: 0.15em 0 0 1.6em !important;
  padding: 0 0 0 0.7em !important; border-left: 3px solid #c8ccd0; opacity: 0.85; }
.src-file { opacity: 0.65; font-size: 0.85em; }
"""

_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass
class Session:
    """One browser session's chat: what is shown, the plain-text turns, and answers by index."""

    messages: list[dict[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)


def badge(answer: Answer) -> str:
    """The verdict as a coloured pill: Node.js / Python / Tie (slight edge), or No verdict."""
    if answer.abstained or answer.verdict is None:
        return '<span class="verdict verdict-none">No verdict</span>'
    classes = f"verdict verdict-{answer.verdict}"
    if answer.strength == "slight":
        classes += " verdict-slight"
    return f'<span class="{classes}">{html.escape(answer.verdict_label or "")}</span>'


def render_answer(answer: Answer, partial: str | None = None) -> str:
    """Badge, escaped answer Markdown with [n] linked to its source, then the sources."""
    key = hashlib.sha1(answer.model_dump_json().encode()).hexdigest()[:8]
    cited = {c.n for c in answer.citations}

    def link(match: re.Match[str]) -> str:
        n = int(match[1])
        return f'<a class="cite" href="#src-{key}-{n}">[{n}]</a>' if n in cited else match[0]

    # Escape first: the answer may echo user text, and only our own tags may be HTML.
    body = _MARKER.sub(link, html.escape(answer.answer if partial is None else partial))
    parts = [badge(answer), body]
    if partial is None and answer.citations:
        parts.append(_sources(answer, key))
    return "\n\n".join(parts)


def _sources(answer: Answer, key: str) -> str:
    # One HTML block without blank lines, so Markdown leaves it alone.
    items = "".join(
        f'<li id="src-{key}-{c.n}"><strong>[{c.n}] {html.escape(c.section)}</strong> '
        f'<span class="src-file">{html.escape(c.source)}</span>'
        f"<blockquote>{html.escape(c.quote).replace(chr(10), '<br>')}</blockquote></li>"
        for c in sorted(answer.citations, key=lambda c: c.n)
    )
    count = len(answer.citations)
    label = f"{count} source" + ("" if count == 1 else "s")
    return f'<details class="sources"><summary>{label}</summary><ul>{items}</ul></details>'


def _prefixes(text: str, size: int = 24) -> Iterator[str]:
    """The answer in growing prefixes: the offline engine answers at once, so stream the text."""
    for end in range(size, len(text) + size, size):
        yield text[: min(end, len(text))]


def render_error(message: str) -> str:
    """A refusal or failure, shown as the assistant's reply."""
    return f"⚠️ {html.escape(message)}"


def chat(app: FastAPI, question: str, session: Session) -> Iterator[tuple[str, Any, Session]]:
    """Ask with the session's earlier turns; yields (textbox, chat messages, session) frames."""
    if not (question or "").strip():
        yield "", session.messages, session
        return
    messages = [
        *session.messages,
        {"role": "user", "content": html.escape(question.strip())},
        {"role": "assistant", "content": THINKING},
    ]
    at = len(messages) - 1
    session.messages = messages
    yield "", messages, session
    try:
        advisor = live_advisor(app)  # reloaded if the index was rebuilt or broke
        history = session.turns[-MAX_HISTORY_TURNS:]
        asked = clean_question(question)
        answer: Answer = advisor.ask(AskRequest(question=asked, history=history))
    except AdvisorError as exc:
        messages[at] = {"role": "assistant", "content": render_error(str(exc))}
        yield "", messages, session
        return
    except Exception:
        log.exception("The chat page could not answer %r", question)
        messages[at] = {
            "role": "assistant",
            "content": render_error("Something went wrong answering that; see the server log."),
        }
        yield "", messages, session
        return
    for prefix in _prefixes(answer.answer):
        messages[at] = {"role": "assistant", "content": render_answer(answer, partial=prefix)}
        yield "", messages, session
        time.sleep(STREAM_DELAY_S)
    messages[at] = {"role": "assistant", "content": render_answer(answer)}
    session.turns += [
        Turn(role="user", content=asked),
        # An LLM's answer may hold anything; a turn must stay valid for the next question.
        Turn(role="assistant", content=printable(answer.answer)[:MAX_TURN_CHARS]),
    ]
    session.answers[at] = answer
    for old in sorted(session.answers)[:-MAX_KEPT_ANSWERS]:
        del session.answers[old]
    yield "", messages, session


def record_vote(app: FastAPI, session: Session, data: gr.LikeData) -> int | None:
    """Store a thumbs up/down on one of this session's answers; the vote's id, if stored."""
    index = data.index[0] if isinstance(data.index, tuple | list) else data.index
    answer = session.answers.get(int(index))
    if answer is None or not isinstance(data.liked, bool):
        return None  # an error reply, a forgotten answer, or a vote being taken back
    try:
        vote_id: int = app.state.feedback.add(
            question=answer.question,
            answer=answer.answer,
            verdict=answer.verdict,
            kb_version=answer.kb_version,
            vote="up" if data.liked else "down",
        )
    except AdvisorError as exc:
        gr.Warning(f"Your vote was not saved: {exc}")
        return None
    gr.Info("Thanks — your vote was saved.", duration=3)
    return vote_id


def knowledge_base_markdown(advisor: Any) -> str:
    """The corpus's tables as it has them, and every indexed document with its chunk counts."""
    if advisor is None:
        return "_The knowledge base is still loading; reload the page in a moment._"
    chunks = advisor.kb.chunks
    out = [f"Knowledge base version `{html.escape(str(advisor.kb.kb_version))}`."]
    for chunk in (c for c in chunks if c.kind == "table"):
        name = chunk.metadata.get("table") or chunk.section
        out.append(f"### {html.escape(str(name))}\n\n_From {html.escape(chunk.source)}_")
        out.append(html.escape(chunk.text, quote=False))  # still a Markdown table, minus HTML
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    titles: dict[str, str] = {}
    for chunk in chunks:
        kinds[chunk.source][chunk.kind] += 1
        titles.setdefault(chunk.source, str(chunk.metadata.get("title") or ""))
    rows = [
        f"| {_cell(source)} | {_cell(titles[source])} | {sum(k.values())} | {k['text']} | "
        f"{k['table']} | {k['row']} |"
        for source, k in kinds.items()
    ]
    out.append("### Indexed documents")
    header = "| Document | Title | Chunks | Text | Tables | Table rows |\n|---|---|--:|--:|--:|--:|"
    out.append("\n".join([header, *rows]))
    return "\n\n".join(out)


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def build_ui(app: FastAPI) -> gr.Blocks:
    """The chat tab and the knowledge-base tab; reads `app.state.advisor` at call time."""
    with gr.Blocks(title=TITLE, fill_width=False) as demo:
        # mount_gradio_app replaces Blocks-level CSS, so the badge styles ship in the page.
        gr.HTML(
            f"<style>{CSS}</style><h1 style='margin:0.2em 0'>{html.escape(TITLE)}</h1>"
            "<p style='margin:0;opacity:0.8'>Answers from a local knowledge base, with a verdict "
            "and numbered sources you can check.</p>"
        )
        session = gr.State(Session())
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(
                label="Stack Advisor",
                show_label=False,
                height=560,
                buttons=["copy"],
                placeholder="Ask which stack fits your project, e.g. a chat app or an ETL job.",
                elem_id="chat",
            )
            with gr.Row():
                box = gr.Textbox(
                    placeholder="Node.js or Python for …?",
                    show_label=False,
                    scale=8,
                    autofocus=True,
                    max_lines=6,
                    elem_id="question",
                )
                send = gr.Button("Ask", variant="primary", scale=1, min_width=80)
            examples = gr.Examples(EXAMPLES, inputs=[box], label="Try one")

        with gr.Tab("Knowledge base"):
            kb = gr.Markdown(elem_id="kb")

        def respond(question: str, state: Session) -> Iterator[tuple[str, Any, Session]]:
            yield from chat(app, question, state)

        def like(state: Session, data: gr.LikeData) -> None:
            record_vote(app, state, data)

        outputs = [box, chatbot, session]
        # The chat page answers under the same limits as the API: N at once, a bounded queue.
        settings = app.state.settings
        limit = {"concurrency_limit": settings.max_concurrent, "concurrency_id": "answer"}
        for trigger in (box.submit, send.click):
            trigger(respond, [box, session], outputs, **limit)
        examples.load_input_event.then(respond, [box, session], outputs, **limit)
        chatbot.like(like, [session], None)
        chatbot.clear(lambda: Session(), None, [session])
        demo.load(lambda: knowledge_base_markdown(app.state.advisor), None, [kb])
    demo.queue(max_size=settings.max_queue or None)
    return demo
