"""Shared fixtures: isolated env vars, a temporary copy of the corpus and a session-wide index."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings

from app import index
from app.chain import Advisor
from app.config import Settings, get_settings
from app.embeddings import load_embeddings
from app.runtime import build_advisor

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("ADVISOR_", "SLACK_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def make_settings(base: Path, **overrides: object) -> Settings:
    """Settings rooted in `base` (a copy of the corpus, its own index and data dirs)."""
    corpus = base / "corpus"
    if not corpus.exists():
        shutil.copytree(CORPUS, corpus)
    values: dict[str, object] = {
        "corpus_dir": corpus,
        "index_dir": base / "index",
        "data_dir": base / "data",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the ONNX export, shared by the whole session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def embeddings(model_cache: Path) -> Embeddings:
    """The real (ONNX) embeddings, exported once per session."""
    return load_embeddings("onnx", model_cache)


@pytest.fixture(scope="session")
def kb_settings(tmp_path_factory: pytest.TempPathFactory, embeddings: Embeddings) -> Settings:
    """Settings whose index is built from the real corpus once per session."""
    settings = make_settings(tmp_path_factory.mktemp("kb"))
    index.sync(settings, embeddings)
    return settings


@pytest.fixture(scope="session")
def advisor(kb_settings: Settings, embeddings: Embeddings) -> Advisor:
    """The real chain with the offline engine over the session index."""
    return build_advisor(kb_settings, embeddings=embeddings, refresh=False, quiet=True)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Settings:
    """Settings on a private copy of the corpus with an empty index."""
    return make_settings(tmp_path)
