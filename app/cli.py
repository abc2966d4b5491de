"""`advisor`: index, chunks, search, ask, serve, eval and bench from the shell."""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from app.config import Settings, get_settings
from app.errors import AdvisorError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `advisor` console script; errors print one line, never a traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, get_settings()) or 0)
    except AdvisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advisor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build or update the index from corpus/")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("chunks", help="list the corpus chunks (id, section, first words)")
    p.add_argument("--json", action="store_true", help="one JSON object per chunk")
    p.set_defaults(handler=cmd_chunks)

    p = sub.add_parser("search", help="top chunks for a query, with scores and sections")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=None, help="how many chunks (default: settings.k)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("ask", help="answer a question with a verdict and cited sources")
    p.add_argument("question", nargs="?", help="the question (omit with --jsonl)")
    p.add_argument("--json", action="store_true", help="print the Answer as one JSON object")
    p.add_argument("--jsonl", action="store_true", help="read JSON lines from stdin, answer each")
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser("serve", help="start the chat page, JSON API and chat-tool webhooks")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("eval", help="run the eval suite and write a report")
    p.add_argument("--split", choices=["test", "dev", "all"], default="test")
    p.add_argument("--gate", action="store_true", help="exit non-zero when a metric regresses")
    p.add_argument("--update-baseline", action="store_true", help="accept these scores")
    p.add_argument("--engine", choices=["offline", "llm"], default="offline")
    p.add_argument("--out", default=None, help="report directory (default evals/reports/)")
    p.add_argument("--dataset", default=None, help="dataset file (default evals/dataset.yaml)")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("bench", help="measure latency, throughput, cold start, index and memory")
    p.add_argument("--quick", action="store_true", help="fewer questions and shorter loads")
    p.add_argument("--out", default=None, help="JSON results file (default bench/results.json)")
    p.set_defaults(handler=cmd_bench)
    return parser


def _embeddings(settings: Settings) -> Any:
    from app.embeddings import load_embeddings

    return load_embeddings(settings.embedder, settings.index_dir)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """Build or update the index, printing what changed."""
    from app import index
    from app.runtime import progress_bar

    report = index.sync(
        settings, _embeddings(settings), rebuild=args.rebuild, progress=progress_bar("Embedding")
    )
    print(report.summary())
    return 0


def cmd_chunks(args: argparse.Namespace, settings: Settings) -> int:
    """Print every chunk of the corpus as it is on disk."""
    from app.index import current_chunks

    for chunk in current_chunks(settings):
        if args.json:
            print(
                json.dumps(
                    {
                        "id": chunk.id,
                        "source": chunk.source,
                        "section": chunk.section,
                        "kind": chunk.kind,
                        "text": chunk.text,
                    }
                )
            )
        else:
            words = " ".join(chunk.text.split()[:12])
            print(f"{chunk.id}  {chunk.kind:<5}  {chunk.section}  |  {words}…")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Print the top chunks for a query (hybrid retrieval)."""
    from app.runtime import load_retriever

    retriever = load_retriever(settings)
    hits = retriever.retrieve(retriever.embed(args.query), args.k or settings.k)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "rank": h.rank,
                        "chunk_id": h.chunk.id,
                        "score": round(h.score, 5),
                        "similarity": round(h.similarity, 4),
                        "section": h.chunk.section,
                        "source": h.chunk.source,
                        "text": h.chunk.text,
                    }
                    for h in hits
                ]
            )
        )
        return 0
    for h in hits:
        first = " ".join(h.chunk.text.split()[:16])
        print(f"{h.rank}. [{h.similarity:.3f}] {h.chunk.section} ({h.chunk.id})\n   {first}…")
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    """Answer one question, or a JSON-lines batch from stdin."""
    from app.answer import clean_question
    from app.runtime import build_advisor

    if args.jsonl:
        return _ask_jsonl(build_advisor(settings))
    if not args.question:
        print(
            'error: give a question, e.g. advisor ask "Node or Python for a chat app?"',
            file=sys.stderr,
        )
        return 2
    clean_question(args.question)  # refuse bad input before loading anything
    answer = build_advisor(settings).ask(args.question)
    if args.json:
        print(answer.model_dump_json())
    else:
        from app.render import print_answer

        print_answer(answer)
    return 0


def _ask_jsonl(advisor: Any) -> int:
    stdin = sys.stdin.buffer
    for n, raw in enumerate(stdin, start=1):
        if not raw.strip():
            continue
        try:
            payload = json.loads(raw.decode("utf-8"))
            if not isinstance(payload, dict):
                raise ValueError("each line must be a JSON object with a 'question'")
            print(advisor.ask(payload).model_dump_json(), flush=True)
        except UnicodeDecodeError:
            print(json.dumps({"error": "line is not UTF-8", "line": n}), flush=True)
        except (ValueError, AdvisorError) as exc:
            print(json.dumps({"error": str(exc).splitlines()[0], "line": n}), flush=True)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start the server (index built first when missing or stale)."""
    from app.serve import serve

    return serve(settings, host=args.host, port=args.port)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Run the eval suite (see app/evaluation.py)."""
    from app.evaluation import cli_eval

    return cli_eval(args, settings)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmarks (see app/bench.py)."""
    from app.bench import cli_bench

    return cli_bench(args, settings)
