"""The eval suite: load the hand-labelled dataset, run it through the chain, score it, gate it."""

import argparse
import json
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from app.chain import Advisor
from app.chunking import Chunk
from app.config import Settings
from app.errors import ConfigError
from app.eval_metrics import metrics

__all__ = ["Item", "ItemResult", "Results", "load_dataset", "run", "metrics", "check_gate"]

EVALS = Path("evals")
DATASET = EVALS / "dataset.yaml"
THRESHOLDS = EVALS / "thresholds.toml"
BASELINE = EVALS / "baseline.json"
REPORTS = EVALS / "reports"
KINDS = ("row", "prose", "factual", "out_of_scope", "injection", "followup")
SPLITS = ("dev", "test")
VERDICTS = ("node", "python", "tie")
STRENGTHS = ("clear", "slight")
RETRIEVAL_DEPTH = 10  # MRR and nDCG look this deep; recall uses settings.k
EPS = 1e-9  # float noise must not fail a gate set at exactly 1.0


@dataclass(frozen=True)
class Item:
    """One labelled question of evals/dataset.yaml."""

    id: str
    kind: str
    split: str
    question: str
    history: tuple[dict[str, str], ...] = ()
    expected_verdict: str | None = None
    expected_strength: str | None = None
    gold_rows: tuple[str, ...] = ()
    gold_sections: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    style: str | None = None
    expect_abstain: bool = False

    @property
    def should_decline(self) -> bool:
        """Out-of-scope questions and injections labelled `expect_abstain` must be declined."""
        return self.kind == "out_of_scope" or (self.kind == "injection" and self.expect_abstain)

    @property
    def verdict_scored(self) -> bool:
        """Counts towards verdict accuracy: a verdict kind with an expected verdict."""
        return self.kind in ("row", "prose", "injection", "followup") and bool(
            self.expected_verdict
        )

    def is_gold(self, chunk: Chunk) -> bool:
        """A row chunk is gold when its row is; any other chunk when its section is."""
        # Sibling rows share the table's section; counting them would make a wrong row a "hit".
        row_key = chunk.metadata.get("row_key")
        if row_key and self.gold_rows:
            return row_key in self.gold_rows
        return chunk.section in self.gold_sections


@dataclass
class ItemResult:
    """What the chain answered for one item, and what retrieval ranked for it."""

    item: Item
    answer: Any  # app.answer.Answer, or None when the chain raised
    error: str | None
    wall_ms: float
    retrieved: list[str] = field(default_factory=list)  # chunk ids, best first


@dataclass
class Results:
    """One run of the suite: per-item results plus what the run used."""

    items: list[ItemResult]
    engine: str
    kb_version: str
    k: int
    split: str = "all"
    dataset_version: str = ""
    started: str = ""
    wall_s: float = 0.0


def load_dataset(path: Path | str = DATASET) -> list[Item]:
    """Every item of the dataset, validated; `ConfigError` names the first bad item."""
    return _parse_items(_read_yaml(Path(path)), str(path))


def dataset_version(path: Path | str = DATASET) -> str:
    """The dataset's `version` field."""
    return str(_read_yaml(Path(path)).get("version", ""))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"No eval dataset at {path}: run `advisor eval` from the project root.")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ConfigError(f"{path} must be a mapping with an `items:` list.")
    return data


def _parse_items(data: dict[str, Any], where: str) -> list[Item]:
    items: list[Item] = []
    seen: set[str] = set()
    for n, raw in enumerate(data["items"], start=1):
        name = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(name, str):
            raise ConfigError(f"{where}: item #{n} is not a mapping with an `id`.")
        checks = [
            (name not in seen, "duplicate id"),
            (raw.get("kind") in KINDS, f"kind must be one of {KINDS}"),
            (raw.get("split") in SPLITS, f"split must be one of {SPLITS}"),
            (isinstance(raw.get("question"), str) and raw["question"].strip(), "empty question"),
            (raw.get("expected_verdict") in (*VERDICTS, None), f"verdict must be in {VERDICTS}"),
            (raw.get("expected_strength") in (*STRENGTHS, None), "strength: clear or slight"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{where}: item {name}: {message}.")
        seen.add(name)
        items.append(
            Item(
                id=name,
                kind=raw["kind"],
                split=raw["split"],
                question=raw["question"].strip(),
                history=tuple(dict(t) for t in raw.get("history") or ()),
                expected_verdict=raw.get("expected_verdict"),
                expected_strength=raw.get("expected_strength"),
                gold_rows=tuple(raw.get("gold_rows") or ()),
                gold_sections=tuple(raw.get("gold_sections") or ()),
                keywords=tuple(str(k) for k in raw.get("keywords") or ()),
                style=raw.get("style"),
                expect_abstain=bool(raw.get("expect_abstain", False)),
            )
        )
    return items


def run(
    advisor: Advisor,
    items: Sequence[Item],
    progress: Callable[[int, int], None] | None = None,
    split: str = "all",
    version: str = "",
) -> Results:
    """Ask every item through `advisor` (the product chain) and rank chunks for retrieval scores."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    out: list[ItemResult] = []
    for n, item in enumerate(items, start=1):
        request = {"question": item.question, "history": list(item.history)}
        began = time.perf_counter()
        try:
            answer, error = advisor.ask(request), None
        except Exception as exc:  # one broken item must not hide every other result
            answer, error = None, f"{type(exc).__name__}: {exc}"
        wall = (time.perf_counter() - began) * 1000
        standalone = answer.standalone_question if answer is not None else item.question
        hits = advisor.retriever.retrieve(advisor.retriever.embed(standalone), RETRIEVAL_DEPTH)
        out.append(ItemResult(item, answer, error, round(wall, 3), [h.chunk.id for h in hits]))
        if progress is not None:
            progress(n, len(items))
    return Results(
        items=out,
        engine=str(getattr(advisor.engine, "name", type(advisor.engine).__name__)),
        kb_version=advisor.kb.kb_version,
        k=advisor.retriever.k,
        split=split,
        dataset_version=version,
        started=started,
        wall_s=round(time.perf_counter() - t0, 3),
    )


def load_thresholds(path: Path | str = THRESHOLDS) -> dict[str, Any]:
    """The gate's floors, ceilings and regression rule."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"No gate thresholds at {path}.") from None


def load_baseline(path: Path | str = BASELINE) -> dict[str, Any]:
    """The last accepted scores (empty metrics when none were accepted yet)."""
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {"kb_version": None, "metrics": {}}


def check_gate(
    report: dict[str, Any], thresholds: dict[str, Any], baseline: dict[str, Any] | None
) -> list[str]:
    """Every gate failure: a floor or ceiling missed, or a critical metric regressed."""
    scores: dict[str, Any] = report["scores"]
    failures: list[str] = []
    bounds = [(n, v, "floor") for n, v in thresholds.get("min", {}).items()]
    bounds += [(n, v, "ceiling") for n, v in thresholds.get("max", {}).items()]
    for name, bound, kind in bounds:
        value = scores.get(name)
        if value is None:
            failures.append(f"{name}: not computed (no items it applies to in this run)")
            continue
        miss = bound - value if kind == "floor" else value - bound
        if miss > EPS:
            side = "below its floor" if kind == "floor" else "above its ceiling"
            failures.append(f"{name} = {value:.3f} is {miss:.3f} {side} {bound:.3f}")
    rule = thresholds.get("regression", {})
    max_drop = float(rule.get("max_drop", 0.03))
    lower_better = set(thresholds.get("max", {}))
    accepted = (baseline or {}).get("metrics") or {}
    for name in rule.get("critical", []):
        old, new = accepted.get(name), scores.get(name)
        if old is None or new is None:
            continue
        worse = new - old if name in lower_better else old - new
        if worse > max_drop + EPS:
            failures.append(
                f"{name} = {new:.3f} is {worse:.3f} worse than the baseline {old:.3f} "
                f"(allowed {max_drop:.2f})"
            )
    return failures


def baseline_notes(report: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """What a reader must know about the comparison: a missing baseline, another KB or engine."""
    run_info = report["run"]
    if run_info["split"] != "test":
        return ["baseline not compared: it holds test-split scores and this run is not `test`"]
    if not baseline or not baseline.get("metrics"):
        return ["no baseline accepted yet: `advisor eval --update-baseline` records one"]
    notes = []
    if baseline.get("kb_version") != run_info["kb_version"]:
        notes.append(
            f"baseline kb_version {baseline.get('kb_version')} differs from this run's "
            f"{run_info['kb_version']}: the knowledge base changed since it was accepted "
            "(compared anyway)"
        )
    if baseline.get("engine") and baseline["engine"] != run_info["engine"]:
        notes.append(f"baseline engine {baseline['engine']} differs from {run_info['engine']}")
    return notes


def baseline_from(report: dict[str, Any]) -> dict[str, Any]:
    """The baseline record for a run: its scores and what produced them."""
    run_info = report["run"]
    keys = ("kb_version", "engine", "dataset_version", "split", "started")
    return {**{k: run_info[k] for k in keys}, "metrics": report["scores"]}


def cli_eval(args: argparse.Namespace, settings: Settings) -> int:
    """`advisor eval`: run, report, compare; non-zero with --gate when a metric fails."""
    from app import eval_report
    from app.runtime import build_advisor, progress_bar

    if args.update_baseline and args.split != "test":
        print(
            "error: --update-baseline records test-split scores; use --split test", file=sys.stderr
        )
        return 2
    if args.engine == "llm" and not settings.llm:
        print(
            "error: --engine llm needs an LLM: set ADVISOR_LLM (e.g. ollama:llama3.1 or "
            "openai:gpt-4o-mini), or run the offline engine with --engine offline",
            file=sys.stderr,
        )
        return 2
    dataset = Path(getattr(args, "dataset", None) or DATASET)
    items = [i for i in load_dataset(dataset) if args.split in ("all", i.split)]
    if not items:
        print(f"error: {dataset} has no `{args.split}` items", file=sys.stderr)
        return 2
    gated = dataset.resolve() == Path(DATASET).resolve()
    if args.update_baseline and not gated:
        print("error: --update-baseline records scores of evals/dataset.yaml only", file=sys.stderr)
        return 2
    thresholds = load_thresholds(THRESHOLDS)
    baseline: dict[str, Any] | None = load_baseline(BASELINE)
    if not gated:
        baseline = None  # the baseline holds scores of the gated dataset only
    # --engine offline means offline even when ADVISOR_LLM is set.
    use = settings if args.engine == "llm" else settings.model_copy(update={"llm": None})
    advisor = build_advisor(use)
    results = run(advisor, items, progress_bar("Evaluating"), args.split, dataset_version(dataset))
    report = metrics(results, advisor)
    if args.engine == "llm":
        skipped = "skipped (no judge configured)"
        report["judged"] = {"faithfulness": skipped, "answer_relevancy": skipped}
    failures = check_gate(report, thresholds, baseline if args.split == "test" else None)
    notes = baseline_notes(report, baseline)
    if args.split != "test":
        notes.append("the floors are set for the test split; on this split they are indicative")
    report["gate"] = {
        "enforced": bool(args.gate),
        "failures": failures,
        "notes": notes,
        "thresholds": thresholds,
        "baseline": baseline,
    }
    out_dir = eval_report.write_report(report, Path(args.out) if args.out else REPORTS)
    eval_report.print_summary(report, out_dir)
    if args.update_baseline:
        BASELINE.write_text(json.dumps(baseline_from(report), indent=2) + "\n", encoding="utf-8")
        print(f"baseline updated: {BASELINE} (kb {report['run']['kb_version']})")
    return 1 if args.gate and failures else 0
