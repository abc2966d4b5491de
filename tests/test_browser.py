"""The chat page in a real browser: streamed answer, badge, sources, a vote, and no XSS."""

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.chain import Advisor
from app.config import Settings
from app.server import create_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
GAME = "Node or Python for a real-time multiplayer game backend?"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def require_chromium(path: Path) -> Path:
    """Skip without Chromium, except in CI, where a missing browser is a failure."""
    if path.exists():
        return path
    why = f"{path} not found: install it with `apt-get install chromium` (or `make browser`)."
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Checked before the (slow) advisor fixture is built: it comes first in `server`."""
    return require_chromium(CHROMIUM)


@pytest.fixture(scope="module")
def server(
    chromium: Path,
    advisor: Advisor,
    kb_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The whole app (API + chat page) on a free 127.0.0.1 port, in a thread."""
    settings = kb_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("data")})
    config = uvicorn.Config(
        create_app(settings, advisor=advisor), host="127.0.0.1", port=0, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser(chromium: Path, server: str) -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh chat session; fails the test on any alert() or page error."""
    OUT.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    problems: list[str] = []

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(server + "/")
    page.wait_for_selector("#question textarea", timeout=30_000)
    yield page
    context.close()
    assert problems == []


def ask(page: Any, question: str, replies: int) -> Any:
    """Type a question, wait for the streamed reply to finish; the last reply's locator."""
    page.fill("#question textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function(
        """n => {
          const bots = document.querySelectorAll('#chat [data-testid=bot]');
          return bots.length >= n && !bots[n - 1].textContent.includes('Looking it up')
            && document.querySelectorAll('.generating').length === 0;
        }""",
        arg=replies,
        timeout=60_000,
    )
    return page.locator("#chat [data-testid=bot]").nth(replies - 1)


def test_chat_answers_with_badge_sources_and_takes_a_vote(page: Any, server: str) -> None:
    reply = ask(page, GAME, 1)
    assert reply.locator(".verdict").inner_text() == "Node.js"
    sources = reply.locator("details.sources")
    assert sources.evaluate("d => d.open") is False  # folded until asked for
    reply.locator("a.cite").first.click()  # jumps to its source, unfolding the list
    assert sources.evaluate("d => d.open") is True
    assert "Use Case Decision Matrix" in sources.inner_text()
    page.screenshot(path=str(OUT / "browser-chat.png"))

    page.locator("#chat button[aria-label=Like]").last.click()
    deadline = time.monotonic() + 15
    while (got := httpx.get(f"{server}/api/feedback").json())["total"] < 1:
        assert time.monotonic() < deadline, "the vote never reached /api/feedback"
        time.sleep(0.2)
    vote = got["items"][0]
    assert (vote["question"], vote["vote"], vote["verdict"]) == (GAME, "up", "node")
    assert vote["kb_version"] and "[1]" in vote["answer"]


def test_html_in_a_question_is_shown_not_run(page: Any) -> None:
    ask(page, XSS, 1)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#chat [data-testid=user]").last.inner_text() == XSS
    assert page.locator("#chat img[src=x], #chat script").count() == 0
    page.screenshot(path=str(OUT / "browser-xss.png"))


def test_knowledge_base_tab_shows_the_tables(page: Any) -> None:
    page.get_by_role("tab", name="Knowledge base").click()
    kb = page.locator("#kb")
    kb.get_by_text("Use case decision matrix").wait_for(timeout=15_000)
    assert "Ecosystem comparison" in kb.inner_text()
    assert "node-vs-python-2026.md" in kb.inner_text()
    page.screenshot(path=str(OUT / "browser-kb.png"), full_page=True)


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "chromium"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        require_chromium(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_chromium(missing)
