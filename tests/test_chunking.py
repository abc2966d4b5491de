"""Chunking the article: tables restored cell by cell, row sentences, heading paths, stable ids."""

import json
import re
from pathlib import Path

import pytest
from support import MATRIX_ROW_KEYS

from app.chunking import PATH_SEP, Chunk, chunk_corpus
from app.corpus import load_corpus
from app.errors import CorpusError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
ARTICLE = "node-vs-python-2026.md"

# Copied by hand from corpus/node-vs-python-2026.md: Factor | Node.js | Python.
ECOSYSTEM = [
    ("Package manager", "npm (3M+ packages)", "pip (500K+ packages)"),
    ("REST API frameworks", "Express, Fastify, NestJS, Hono", "FastAPI, Django REST, Flask"),
    ("ORM", "Prisma, TypeORM, Drizzle", "SQLAlchemy, Django ORM, Tortoise"),
    (
        "AI/ML libraries",
        "Limited (TensorFlow.js)",
        "Best-in-class (PyTorch, TensorFlow, scikit-learn)",
    ),
    ("Data processing", "Basic (streams)", "Excellent (Pandas, NumPy, Polars)"),
    ("Real-time (WebSockets)", "Native (Socket.io)", "Good (Channels, Starlette)"),
    ("Job queues", "Bull, BullMQ", "Celery, RQ, Dramatiq"),
    ("GraphQL", "Apollo Server, Mercurius", "Strawberry, Graphene"),
]

# Use Case | Winner | Reason.
DECISION_MATRIX = [
    ("REST API (standard CRUD)", "Tie", "Both excellent; choose by team preference"),
    (
        "Real-time apps (chat, gaming)",
        "Node.js",
        "Event loop handles WebSocket connections efficiently",
    ),
    ("ML model serving", "Python", "Model training and inference libraries are Python-native"),
    ("Data pipelines / ETL", "Python", "Pandas, Polars, NumPy dominate"),
    ("Microservices", "Node.js slight edge", "Faster startup, smaller container images"),
    ("Full-stack (same language)", "Node.js", "Eliminates context switching"),
    ("Background jobs (data-heavy)", "Python", "Celery + NumPy/Pandas"),
    ("GraphQL API", "Tie", "Strong frameworks in both"),
]


@pytest.fixture(scope="module")
def chunks() -> list[Chunk]:
    return [c for c in chunk_corpus(load_corpus(CORPUS)) if c.source == ARTICLE]


def rows_of(chunks: list[Chunk], table: str) -> list[Chunk]:
    return [c for c in chunks if c.kind == "row" and c.metadata["table"] == table]


def test_ecosystem_table_restored_cell_by_cell(chunks: list[Chunk]) -> None:
    rows = rows_of(chunks, "Ecosystem comparison")
    assert [list(r.cells.values()) for r in rows] == [list(row) for row in ECOSYSTEM]
    for row, (factor, node, python) in zip(rows, ECOSYSTEM, strict=True):
        assert list(row.cells) == ["Factor", "Node.js", "Python"]
        assert row.cells["Factor"] == factor
        assert row.cells["Node.js"] == node
        assert row.cells["Python"] == python
        assert row.section == "Ecosystem Comparison"
        assert row.text == (
            f"Ecosystem comparison — Factor: {factor}. Node.js: {node}. Python: {python}."
        )


def test_decision_matrix_restored_cell_by_cell(chunks: list[Chunk]) -> None:
    rows = rows_of(chunks, "Use case decision matrix")
    assert len(rows) == 8
    for row, (use_case, winner, reason), key in zip(
        rows, DECISION_MATRIX, MATRIX_ROW_KEYS, strict=True
    ):
        assert row.cells == {"Use Case": use_case, "Winner": winner, "Reason": reason}
        assert json.loads(str(row.metadata["cells"])) == row.cells
        assert row.metadata["table"] == "Use case decision matrix"
        assert row.metadata["row_key"] == key
        assert row.metadata["kind"] == "row"
        assert row.location == f"Use Case Decision Matrix#row:{key}"
        assert row.text == (
            f"Use case decision matrix — Use case: {use_case}. Winner: {winner}. Reason: {reason}."
        )
        assert row.embed_text == row.text  # rows speak for themselves


def test_matrix_row_sentence_form(chunks: list[Chunk]) -> None:
    (row,) = [c for c in chunks if c.metadata.get("row_key") == "real-time-apps-chat-gaming"]
    assert row.text == (
        "Use case decision matrix — Use case: Real-time apps (chat, gaming). Winner: Node.js. "
        "Reason: Event loop handles WebSocket connections efficiently."
    )


def test_each_matrix_row_is_its_own_chunk(chunks: list[Chunk]) -> None:
    rows = rows_of(chunks, "Use case decision matrix")
    assert [r.metadata["row_key"] for r in rows] == MATRIX_ROW_KEYS
    for row, (use_case, winner, reason) in zip(rows, DECISION_MATRIX, strict=True):
        # Exactly one row per chunk: no other row's use case leaks in.
        others = [u for u, _, _ in DECISION_MATRIX if u != use_case]
        assert use_case in row.text and winner in row.text and reason in row.text
        assert not any(other in row.text for other in others)


def test_each_whole_table_is_a_chunk(chunks: list[Chunk]) -> None:
    tables = {str(c.metadata["table"]): c for c in chunks if c.kind == "table"}
    assert sorted(tables) == ["Ecosystem comparison", "Use case decision matrix"]
    ecosystem = tables["Ecosystem comparison"]
    assert ecosystem.section == "Ecosystem Comparison"
    assert ecosystem.text.splitlines() == [
        "| Factor | Node.js | Python |",
        "| --- | --- | --- |",
        *[f"| {f} | {n} | {p} |" for f, n, p in ECOSYSTEM],
    ]
    matrix = tables["Use case decision matrix"]
    assert matrix.section == "Use Case Decision Matrix"
    assert matrix.text.splitlines() == [
        "| Use Case | Winner | Reason |",
        "| --- | --- | --- |",
        *[f"| {u} | {w} | {r} |" for u, w, r in DECISION_MATRIX],
    ]


def test_heading_path_metadata(chunks: list[Chunk]) -> None:
    sections = {c.section for c in chunks}
    io = "Performance Comparison › I/O-Bound Operations (APIs, Database Queries)"
    cpu = "Performance Comparison › CPU-Bound Operations (Data Processing, ML Inference)"
    assert PATH_SEP == " › "
    assert {
        io,
        cpu,
        "Quick Answer",
        "The Real Question",
        "Framework Recommendations › Node.js",
        "Framework Recommendations › Python",
        "The Monorepo Advantage of Node.js",
    } <= sections
    (io_chunk,) = [c for c in chunks if c.section == io]
    assert io_chunk.metadata["section"] == io
    assert io_chunk.metadata["source"] == ARTICLE
    assert io_chunk.metadata["title"] == (
        "Node.js vs Python for Backend Development: Which to Choose in 2026"
    )
    assert io_chunk.embed_text.startswith(io + "\n")
    assert "non-blocking, event-driven architecture" in io_chunk.text
    # The article's own title heading is not part of any path.
    assert not any(s.startswith("Node.js vs Python for Backend") for s in sections)


def test_ids_are_stable_across_runs_and_unique() -> None:
    first = chunk_corpus(load_corpus(CORPUS))
    second = chunk_corpus(load_corpus(CORPUS))
    assert [c.id for c in first] == [c.id for c in second]
    assert [c.hash for c in first] == [c.hash for c in second]
    assert len({c.id for c in first}) == len(first)
    assert len({(c.source, c.location) for c in first}) == len(first)
    assert all(re.fullmatch(r"[0-9a-f]{16}", c.id) for c in first)


def test_table_with_a_missing_cell_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "broken.md").write_text(
        "---\n"  # 1
        "title: Broken table\n"  # 2
        "---\n"  # 3
        "\n"  # 4
        "# Broken table\n"  # 5
        "\n"  # 6
        "## Matrix\n"  # 7
        "\n"  # 8
        "| Use Case | Winner | Reason |\n"  # 9
        "| --- | --- | --- |\n"  # 10
        "| Chat | Node.js | Event loop |\n"  # 11
        "| ETL | Python |\n"  # 12: a cell short
    )
    with pytest.raises(CorpusError) as caught:
        chunk_corpus(load_corpus(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert "guides/broken.md" in message
    assert "line 12" in message


def test_table_with_an_empty_cell_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text(
        "## Matrix\n\n| Use Case | Winner | Reason |\n| --- | --- | --- |\n| ETL |  | Pandas |\n"
    )
    with pytest.raises(CorpusError, match=r"empty\.md, line 5:"):
        chunk_corpus(load_corpus(tmp_path))


def test_site_chrome_is_absent(chunks: list[Chunk]) -> None:
    text = "\n".join(c.text for c in chunks) + "\n".join(c.section for c in chunks)
    for chrome in ("Stay Ahead", "Get the Ortem Tech Digest", "About the Author"):
        assert chrome.lower() not in text.lower()


SPOT_CHECKS = [
    "Node.js is faster for I/O-bound workloads (APIs, real-time apps, microservices) because of "
    "its non-blocking event loop.",
    "For a standard REST API in 2026, either is fine — choose based on your team's existing "
    "skills.",
    "That framing misses the point.",
    "The right question is: which makes your team more productive for your specific use case?",
    "Node can handle thousands of concurrent connections without spawning new threads",
    "Python (with async frameworks like FastAPI or async Django) closes much of this gap",
    "Python wins decisively.",
    "Database query time will be 10–50x the language overhead.",
    "Fastify — fastest Node.js HTTP framework; excellent for high-throughput APIs",
    "Django — batteries-included, best for content-heavy apps with admin panel needs",
    "This is a significant developer experience advantage that Python cannot match.",
    "Choose based on your primary use case and existing team skills.",
]


@pytest.mark.parametrize("sentence", SPOT_CHECKS)
def test_prose_sentences_survive(chunks: list[Chunk], sentence: str) -> None:
    assert any(sentence in c.text for c in chunks)


def test_every_prose_paragraph_is_in_some_chunk(chunks: list[Chunk]) -> None:
    (doc,) = [d for d in load_corpus(CORPUS) if d.source == ARTICLE]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", doc.body) if p.strip()]
    prose = [p for p in paragraphs if not p.startswith(("#", "|"))]
    assert len(prose) == 11  # 9 paragraphs and 2 lists
    haystack = " ".join(" ".join(c.text.split()) for c in chunks)
    for paragraph in prose:
        for line in paragraph.splitlines():
            plain = " ".join(line.replace("**", "").split())
            assert plain in haystack, plain


def test_odd_line_breaks_do_not_shift_tables(tmp_path: Path) -> None:
    # str.splitlines() also breaks at \f and \u2028; Markdown's line numbers do not.
    table = "| Factor | Node.js |\n| --- | --- |\n| ORM | Prisma |\n| Queues | BullMQ |"
    (tmp_path / "odd.md").write_text(
        f"## Notes\n\nPage\fbreak and line\u2028separator.\n\n{table}\n"
    )
    chunks = chunk_corpus(load_corpus(tmp_path))
    (whole,) = [c for c in chunks if c.kind == "table"]
    assert whole.text == table
    assert [c.cells for c in chunks if c.kind == "row"] == [
        {"Factor": "ORM", "Node.js": "Prisma"},
        {"Factor": "Queues", "Node.js": "BullMQ"},
    ]


def test_rows_whose_keys_clash_still_get_their_own_ids(tmp_path: Path) -> None:
    (tmp_path / "clash.md").write_text(
        "## Languages\n\n| Name | Typed |\n| --- | --- |\n"
        "| C++ | yes |\n| C# | yes |\n| C++ | yes |\n\n"
        "| Name | Fast |\n| --- | --- |\n| C | yes |\n"
    )
    rows = [c for c in chunk_corpus(load_corpus(tmp_path)) if c.kind == "row"]
    assert [c.metadata["row_key"] for c in rows] == ["c", "c", "c", "c"]
    assert [c.location for c in rows] == [
        "Languages#row:c",
        "Languages#row:c~2",
        "Languages#row:c~3",
        "Languages#row:c~4",
    ]
    assert len({c.id for c in rows}) == 4


@pytest.mark.parametrize("header", ["| Name | Name |", "| Name |  |"], ids=["repeated", "empty"])
def test_every_table_column_needs_a_name(tmp_path: Path, header: str) -> None:
    (tmp_path / "headers.md").write_text(f"# Doc\n\n{header}\n| --- | --- |\n| a | b |\n")
    with pytest.raises(CorpusError, match=r"headers\.md, line 3: every table header cell"):
        chunk_corpus(load_corpus(tmp_path))
