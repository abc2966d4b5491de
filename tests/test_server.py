"""The JSON API and health routes, with FastAPI's TestClient against the real chain."""

import pytest
from fastapi.testclient import TestClient

from app.chain import Advisor
from app.config import Settings
from app.server import create_app


@pytest.fixture(scope="module")
def client(kb_settings: Settings, advisor: Advisor) -> TestClient:
    return TestClient(create_app(kb_settings, advisor=advisor, ui=False))


def test_ask_returns_the_answer(client: TestClient) -> None:
    history = [{"role": "user", "content": "Node or Python for a chat app?"}]
    response = client.post(
        "/api/ask", json={"question": "and what about ETL pipelines?", "history": history}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["verdict"] == "python"
    assert body["citations"] and body["kb_version"]
    assert "ETL" in body["standalone_question"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"question": ""}, 422),
        ({"question": "   "}, 422),
        ({"question": "x" * 2001}, 422),
        ({"question": "ok", "history": [{"role": "robot", "content": "hi"}]}, 422),
        ({"question": "ok", "history": "not a list"}, 422),
        ({"question": "ok", "surprise": 1}, 422),
        ({}, 422),
    ],
)
def test_bad_input_is_a_json_error(
    client: TestClient, payload: dict[str, object], status: int
) -> None:
    response = client.post("/api/ask", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_wrong_content_type_and_invalid_json(client: TestClient) -> None:
    text = client.post("/api/ask", content=b"question=hi", headers={"content-type": "text/plain"})
    assert text.status_code == 422 and "error" in text.json()
    broken = client.post(
        "/api/ask", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "error" in broken.json()


def test_body_over_64_kib_is_413(client: TestClient) -> None:
    response = client.post(
        "/api/ask", content=b"x" * (65 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["kb_version"]


def test_openapi_and_docs(client: TestClient) -> None:
    assert "/api/ask" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_not_ready_until_the_advisor_is_loaded(kb_settings: Settings) -> None:
    app = create_app(kb_settings, advisor=None, ui=False)
    bare = TestClient(app)  # no lifespan: nothing is loaded
    assert bare.get("/readyz").status_code == 503
    response = bare.post("/api/ask", json={"question": "Node or Python for ETL?"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "index_unavailable"
