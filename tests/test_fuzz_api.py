"""Property-based fuzzing of the JSON API from its own OpenAPI schema: no 5xx, ever."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from support import FakeAdvisor

from app.chain import Advisor
from app.config import Settings
from app.feedback import FeedbackStore
from app.server import create_app

SETTINGS = Settings(  # type: ignore[call-arg]
    _env_file=None,
    # Chat tools configured, so unsigned fuzz requests meet the signature checks, not a 503.
    slack_signing_secret="fuzz-secret",
    mattermost_token="fuzz-token",
    # Every example must reach the route, not a 429.
    rate_limit_per_minute=0,
    chat_rate_limit_per_minute=0,
)
# Loaded at import so that each operation is its own test; the real chain is plugged in below.
# Loading starts the app's lifespan, which would build an advisor from ./corpus and ./index
# were none set: the fake stands in until then.
APP = create_app(SETTINGS, advisor=FakeAdvisor("placeholder"), ui=False)  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# Negative mode too: values the schema forbids must be refused with a 4xx, not crash.
schema.config.generation.update(modes=["positive", "negative"], deterministic=True)

ROUTES = {
    ("POST", "/api/ask"),
    ("GET", "/api/feedback"),
    ("POST", "/api/feedback"),
    ("POST", "/slack/commands"),
    ("POST", "/slack/events"),
    ("POST", "/mattermost/commands"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}


@pytest.fixture(scope="module", autouse=True)
def _real_chain(advisor: Advisor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # The real chain, so odd Unicode goes through clean-up, retrieval and the engine too.
    APP.state.advisor = advisor
    APP.state.feedback = FeedbackStore(Path(tmp_path_factory.mktemp("fuzz")) / "feedback.sqlite3")
    yield
    APP.state.advisor = FakeAdvisor("placeholder")


def test_every_route_is_in_the_schema() -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ROUTES <= found


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
