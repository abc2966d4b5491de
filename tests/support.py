"""Test doubles and constants shared by several test modules."""

from typing import Any

from app.answer import Answer, AskRequest, Citation
from app.errors import AdvisorError

# The decision matrix's row keys, in the article's order.
MATRIX_ROW_KEYS = [
    "rest-api-standard-crud",
    "real-time-apps-chat-gaming",
    "ml-model-serving",
    "data-pipelines-etl",
    "microservices",
    "full-stack-same-language",
    "background-jobs-data-heavy",
    "graphql-api",
]

DECISION_CITATION = Citation(
    n=1,
    chunk_id="c1",
    source="node-vs-python-2026.md",
    section="Decision matrix",
    quote="Real-time chat: Node.js.",
)
FRAMEWORK_CITATION = Citation(
    n=2,
    chunk_id="c2",
    source="node-vs-python-2026.md",
    section="Frameworks",
    quote="Socket.IO   remains the\nmature choice.",
)


class FakeAdvisor:
    """Answers every question with one fixed, realistic answer (or raises), recording requests."""

    def __init__(self, answer: str, error: AdvisorError | None = None, **changes: Any) -> None:
        self.answer, self.error, self.changes = answer, error, changes
        self.calls: list[AskRequest] = []

    def ask(self, request: AskRequest) -> Answer:
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        values: dict[str, Any] = {
            "question": request.question,
            "standalone_question": request.question,
            "verdict": "node",
            "strength": "clear",
            "answer": self.answer,
            "citations": [DECISION_CITATION, FRAMEWORK_CITATION],
            "engine": "fake",
            "kb_version": "test",
        }
        # A deep copy: tests may edit the answer they get without touching the shared citations.
        return Answer.model_validate(values | self.changes).model_copy(deep=True)
