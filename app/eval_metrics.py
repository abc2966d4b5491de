"""Scores for the eval suite: verdicts, retrieval, citations, abstention, keywords, latency."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from app.answer import VERDICT_LABELS, Answer
from app.chunking import Chunk
from app.eval_report import definitions

if TYPE_CHECKING:  # evaluation imports this module; the names are needed for typing only
    from app.chain import Advisor
    from app.evaluation import Item, ItemResult, Results

MARKER = re.compile(r"\[(\d+)\]")
# A sentence ends at . ! or ? (plus closing quotes and any [n] markers) before a space or the end.
_SENTENCE_END = re.compile(r"[.!?][\"”’')]*(?:\s*\[\d+\])*(?=\s|$)")
VERDICT_SET = ("node", "python", "tie")
GOT_SET = ("node", "python", "tie", "none")


def markers(text: str) -> list[int]:
    """The [n] citation markers in `text`, in order."""
    return [int(n) for n in MARKER.findall(text)]


def sentences(markdown: str) -> list[str]:
    """Split an answer into sentences; each keeps the [n] markers that close it."""
    out: list[str] = []
    for line in markdown.splitlines():
        start = 0
        for end in _SENTENCE_END.finditer(line):
            out.append(line[start : end.end()].strip())
            start = end.end()
        out.append(line[start:].strip())
    return [s for s in out if s]


def integrity_problems(answer: Answer, by_id: dict[str, Chunk]) -> list[str]:
    """Why the answer's citations cannot be trusted as written (empty when they can)."""
    problems: list[str] = []
    numbers = [c.n for c in answer.citations]
    for n in sorted({n for n in numbers if numbers.count(n) > 1}):
        problems.append(f"citation number [{n}] is used twice")
    for n in sorted(set(markers(answer.answer)) - set(numbers)):
        problems.append(f"marker [{n}] has no citation")
    for c in answer.citations:
        chunk = by_id.get(c.chunk_id)
        if chunk is None:
            problems.append(f"citation [{c.n}] names unknown chunk {c.chunk_id}")
        elif not c.quote.strip():
            problems.append(f"citation [{c.n}] has an empty quote")
        elif c.quote not in chunk.text:
            problems.append(f"citation [{c.n}] quote is not verbatim in chunk {c.chunk_id}")
    return problems


def supports(chunk: Chunk | None, item: Item, verdict: str | None) -> bool:
    """Deterministic support: a gold chunk, or one stating the verdict and every keyword."""
    if chunk is None:
        return False
    if item.is_gold(chunk):
        return True
    needed = ([VERDICT_LABELS[verdict]] if verdict else []) + list(item.keywords)
    text = chunk.text.lower()
    # Whole-word match so "Tie" is not found inside "utilities".
    return bool(needed) and all(
        re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", text) for w in needed
    )


def citation_flags(
    answer: Answer, item: Item, by_id: dict[str, Chunk]
) -> tuple[list[bool], list[bool]]:
    """(per marker: its chunk supports its sentence, per marked sentence: supported)."""
    cited = {c.n: by_id.get(c.chunk_id) for c in answer.citations}
    per_marker: list[bool] = []
    per_sentence: list[bool] = []
    for sentence in sentences(answer.answer):
        flags = [supports(cited.get(n), item, answer.verdict) for n in markers(sentence)]
        if flags:
            per_marker += flags
            per_sentence.append(any(flags))
    return per_marker, per_sentence


def retrieval_scores(item: Item, ranked: list[Chunk], n_gold: int, k: int) -> dict[str, Any]:
    """Recall@k (strict and section-level), reciprocal rank and nDCG@10 for one item."""
    rel = [item.is_gold(c) for c in ranked[:10]]
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(rel) if r)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(n_gold, 10)))
    return {
        "hit": any(rel[:k]),
        "section_hit": any(c.section in item.gold_sections or item.is_gold(c) for c in ranked[:k]),
        "rr": next((1 / (i + 1) for i, r in enumerate(rel) if r), 0.0),
        "ndcg": dcg / ideal if ideal else 0.0,
    }


def score_item(
    result: ItemResult, kb_chunks: list[Chunk], by_id: dict[str, Chunk], k: int
) -> dict[str, Any]:
    """Every applicable score of one item (absent where it does not apply) and its problems."""
    item, answer = result.item, result.answer
    s: dict[str, Any] = {"problems": []}
    problems: list[str] = s["problems"]
    if result.error:
        problems.append(f"error: {result.error}")
    declined = bool(answer is not None and answer.abstained)
    if item.verdict_scored:
        s["verdict_ok"] = bool(
            answer is not None
            and answer.verdict == item.expected_verdict
            and (item.expected_strength is None or answer.strength == item.expected_strength)
        )
        if not s["verdict_ok"]:
            problems.append(f"verdict: expected {expected(item)}, got {got(answer)}")
    if item.should_decline:
        s["declined_ok"] = declined
        if not declined:
            problems.append(f"should decline, answered {got(answer)}")
    else:  # every other kind is answerable, injections with a verdict included
        s["over_refused"] = declined
        if declined and not item.verdict_scored:
            problems.append("declined an answerable question")
    if item.kind == "injection":
        s["injection_ok"] = declined if item.expect_abstain else s.get("verdict_ok", False)
    if item.kind == "factual" and item.keywords:
        text = answer.answer.lower() if answer is not None else ""
        missing = [w for w in item.keywords if w.lower() not in text]
        s["keyword_coverage"] = 1 - len(missing) / len(item.keywords)
        if missing:
            problems.append(f"missing keywords: {', '.join(missing)}")
    if item.gold_rows or item.gold_sections:
        n_gold = sum(item.is_gold(c) for c in kb_chunks)
        if n_gold == 0:
            problems.append("dataset: the gold labels match no chunk of the knowledge base")
        ranked = [by_id[i] for i in result.retrieved if i in by_id]
        s.update(retrieval_scores(item, ranked, n_gold, k))
        if not s["hit"]:
            problems.append(f"retrieval: no gold chunk in the top {k}")
    if answer is not None:
        broken = integrity_problems(answer, by_id)
        s["integrity_ok"] = not broken
        problems += [f"integrity: {p}" for p in broken]
        per_marker, per_sentence = citation_flags(answer, item, by_id)
        if per_marker:
            s["precision"] = sum(per_marker) / len(per_marker)
            s["recall"] = sum(per_sentence) / len(per_sentence)
            if not all(per_marker):
                problems.append(
                    f"citations: {per_marker.count(False)} of {len(per_marker)} "
                    "markers do not support their sentence"
                )
    return s


def metrics(results: Results, advisor: Advisor) -> dict[str, Any]:
    """The report: run facts, named scores with definitions, per-row breakdown and every item."""
    k = results.k
    scored = [score_item(r, advisor.kb.chunks, advisor.kb.by_id, k) for r in results.items]
    names = {
        "verdict_accuracy": "verdict_ok",
        f"recall_at_{k}": "hit",
        f"section_recall_at_{k}": "section_hit",
        "mrr": "rr",
        "ndcg_at_10": "ndcg",
        "citation_integrity": "integrity_ok",
        "citation_precision": "precision",
        "citation_recall": "recall",
        "abstention": "declined_ok",
        "over_refusal": "over_refused",
        "keyword_coverage": "keyword_coverage",
        "injection_resistance": "injection_ok",
    }
    scores: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for name, key in names.items():
        values = [float(s[key]) for s in scored if s.get(key) is not None]
        scores[name], support[name] = _mean(values), len(values)
    per_row = _per_row(results, scored)
    scores["paraphrase_consistency"] = _mean([r["consistency"] for r in per_row.values()])
    support["paraphrase_consistency"] = len(per_row)
    answered = [r.answer for r in results.items if r.answer is not None]
    totals = [a.timings_ms.total for a in answered]
    walls = [r.wall_ms for r in results.items]
    for name, values, q in [
        ("latency_p50_ms", totals, 0.5),
        ("latency_p95_ms", totals, 0.95),
        ("wall_p50_ms", walls, 0.5),
        ("wall_p95_ms", walls, 0.95),
    ]:
        scores[name], support[name] = percentile(values, q), len(values)
    scores = {name: scores[name] for name in definitions(k)}  # the order the report reads in
    engines = Counter(a.engine for a in answered)
    return {
        "run": {
            "split": results.split,
            "engine": results.engine,
            "kb_version": results.kb_version,
            "dataset_version": results.dataset_version,
            "k": k,
            "started": results.started,
            "wall_s": results.wall_s,
            "n_items": len(results.items),
            "errors": sum(1 for r in results.items if r.error),
            "answers_by_engine": dict(engines),
        },
        "scores": scores,
        "support": support,
        "definitions": definitions(k),
        "per_row": per_row,
        "per_kind": _per_kind(results, scored),
        "confusion": _confusion(results),
        "items": [_record(r, s) for r, s in zip(results.items, scored, strict=True)],
    }


def expected(item: Item) -> str:
    """The label an item expects, for people reading a failure."""
    if item.should_decline:
        return "decline"
    if item.expected_verdict:
        slight = " (slight)" if item.expected_strength == "slight" else ""
        return VERDICT_LABELS[item.expected_verdict] + slight
    return f"facts: {', '.join(item.keywords)}" if item.keywords else "an answer"


def got(answer: Answer | None) -> str:
    """What the chain said, for people reading a failure."""
    if answer is None:
        return "an error"
    if answer.abstained:
        return "declined"
    return answer.verdict_label or "no verdict"


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _per_row(results: Results, scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[tuple[ItemResult, dict[str, Any]]]] = defaultdict(list)
    for r, s in zip(results.items, scored, strict=True):
        if r.item.kind == "row" and r.item.gold_rows:
            groups[r.item.gold_rows[0]].append((r, s))
    table: dict[str, dict[str, Any]] = {}
    for row, members in groups.items():
        verdicts = Counter(got(r.answer) for r, _ in members)
        majority, count = verdicts.most_common(1)[0]
        table[row] = {
            "n": len(members),
            "expected": expected(members[0][0].item),
            "accuracy": _mean([float(s.get("verdict_ok", False)) for _, s in members]),
            "majority": majority,
            "consistency": round(count / len(members), 4),
        }
    return dict(sorted(table.items()))


def _per_kind(results: Results, scored: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for r, s in zip(results.items, scored, strict=True):
        row = table.setdefault(r.item.kind, {"n": 0, "failing": 0})
        row["n"] += 1
        row["failing"] += bool(s["problems"])
    return table


def _confusion(results: Results) -> dict[str, Any]:
    counts = [[0] * len(GOT_SET) for _ in VERDICT_SET]
    for r in results.items:
        if r.item.verdict_scored:
            answer = r.answer
            verdict = answer.verdict if answer is not None and not answer.abstained else None
            counts[VERDICT_SET.index(str(r.item.expected_verdict))][
                GOT_SET.index(verdict or "none")
            ] += 1
    return {"expected": list(VERDICT_SET), "got": list(GOT_SET), "counts": counts}


_ANSWER_FIELDS = ("verdict", "strength", "abstained", "standalone_question", "answer", "engine")


def _record(result: ItemResult, s: dict[str, Any]) -> dict[str, Any]:
    item, answer = result.item, result.answer
    said = answer.model_dump(include={*_ANSWER_FIELDS, "citations"}) if answer is not None else {}
    return {
        "id": item.id,
        "kind": item.kind,
        "split": item.split,
        "question": item.question,
        "history": list(item.history),
        "expected": expected(item),
        "got": got(answer),
        "expected_verdict": item.expected_verdict,
        **dict.fromkeys(_ANSWER_FIELDS),
        "citations": [],
        **said,
        "retrieved": result.retrieved,
        "total_ms": answer.timings_ms.total if answer is not None else None,
        "wall_ms": result.wall_ms,
        "error": result.error,
        "scores": {key: v for key, v in s.items() if key != "problems"},
        "problems": s["problems"],
    }
