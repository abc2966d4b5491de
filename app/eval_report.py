"""The eval report: report.json, a readable report.md, three PNG plots and a rich summary."""

import json
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

PLOTS = {
    "confusion_matrix.png": "Verdict confusion matrix (rows: expected, columns: answered)",
    "per_row_accuracy.png": "Verdict accuracy and paraphrase consistency per matrix row",
    "latency.png": "Latency per question (chain total and wall time)",
}
_LABELS = {"node": "Node.js", "python": "Python", "tie": "Tie", "none": "none/declined"}


def definitions(k: int) -> dict[str, str]:
    """A one-line definition of every score, as the report prints it."""
    return {
        "verdict_accuracy": "row/prose/injection/followup items with an expected verdict: share "
        "whose answer.verdict equals it (and answer.strength, where expected_strength is given)",
        "paraphrase_consistency": "per matrix row (row items, by gold_rows[0]): share of its "
        "questions whose verdict equals the row's majority verdict; mean over rows",
        f"recall_at_{k}": f"items with gold labels: share with a gold chunk in the top {k} "
        "for answer.standalone_question (gold: a row chunk whose row_key is in gold_rows; any "
        "other chunk whose section is in gold_sections)",
        f"section_recall_at_{k}": f"as recall_at_{k}, but any chunk whose section is in "
        "gold_sections counts, so a sibling row of the right table is a hit (informational)",
        "mrr": "mean reciprocal rank of the first gold chunk in the top 10 (0 when none)",
        "ndcg_at_10": "nDCG@10 with binary relevance (gold chunk = 1); the ideal ranking puts "
        "every gold chunk of the knowledge base first",
        "citation_integrity": "share of answers where every [n] marker has a citation and every "
        "citation's quote appears verbatim in its chunk (must be 1.0)",
        "citation_precision": "ALCE-style, per answer then averaged: share of [n] markers whose "
        "chunk supports the sentence they end (gold chunk, or chunk text holding the verdict "
        "label and every required keyword)",
        "citation_recall": "ALCE-style, per answer then averaged: share of sentences carrying "
        "a marker that at least one of their cited chunks supports",
        "abstention": "out_of_scope items and injection items with expect_abstain: share the "
        "answer declined (answer.abstained)",
        "over_refusal": "answerable items (row/prose/factual/followup, injection with a "
        "verdict): share the answer declined (lower is better)",
        "keyword_coverage": "factual items: share of required keywords found in answer.answer "
        "(case-insensitive), averaged over items",
        "injection_resistance": "injection items: share whose verdict equals expected_verdict, "
        "or that declined when expect_abstain",
        "latency_p50_ms": "median answer.timings_ms.total (the chain's own timing)",
        "latency_p95_ms": "95th percentile of answer.timings_ms.total",
        "wall_p50_ms": "median wall time of advisor.ask, as a caller sees it",
        "wall_p95_ms": "95th percentile wall time of advisor.ask",
    }


def write_report(report: dict[str, Any], root: Path) -> Path:
    """Write report.json, report.md and the plots to root/<timestamp>/; point root/latest at it."""
    out = _fresh_dir(root)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    write_plots(report, out)
    update_latest(root, out)
    return out


def _fresh_dir(root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = root / stamp, 1
    while out.exists():  # two runs in one second must not overwrite each other
        n += 1
        out = root / f"{stamp}-{n}"
    out.mkdir(parents=True)
    return out


def update_latest(root: Path, run_dir: Path) -> Path:
    """root/latest → run_dir: a relative symlink, or a copy where symlinks are not allowed."""
    latest = root / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        latest.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        shutil.copytree(run_dir, latest)
    return latest


def fmt(name: str, value: Any) -> str:
    """A score as people read it: ratios to 3 places, milliseconds to 1."""
    if value is None:
        return "n/a"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.1f} ms" if name.endswith("_ms") else f"{value:.3f}"
    return str(value)


def bound(name: str, thresholds: dict[str, Any]) -> str:
    """The gate's bound for a score ("≥ 0.95", "≤ 0.05"), or "" when it is not gated."""
    if name in thresholds.get("min", {}):
        return f"≥ {thresholds['min'][name]}"
    if name in thresholds.get("max", {}):
        return f"≤ {thresholds['max'][name]}"
    return ""


def _cell(text: Any) -> str:
    # Questions may hold HTML (injection items): escape it so the table shows it, not hides it.
    flat = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;")
    return flat.replace(">", "&gt;").replace("|", "\\|")


def render_markdown(report: dict[str, Any]) -> str:
    """The report for people: run facts, gate verdict, defined scores, breakdowns, failures."""
    run, gate = report["run"], report.get("gate", {})
    thresholds = gate.get("thresholds", {})
    by_engine = ", ".join(f"{k}: {v}" for k, v in run.get("answers_by_engine", {}).items())
    lines = [
        f"# Stack Advisor eval: `{run['split']}` split, {run['started']}",
        "",
        "| Run | |",
        "| --- | --- |",
        f"| Engine | {run['engine']} (answers by engine: {by_engine or 'none'}) |",
        f"| kb_version | `{run['kb_version']}` |",
        f"| Dataset version | {run['dataset_version']} |",
        f"| Split / items | {run['split']} / {run['n_items']} |",
        f"| Retrieval k | {run['k']} |",
        f"| Errors | {run['errors']} |",
        f"| Wall time | {run['wall_s']} s |",
        "",
        "## Gate",
        "",
    ]
    failures = gate.get("failures", [])
    status = "FAILED" if failures else "passed"
    enforced = "enforced (--gate)" if gate.get("enforced") else "not enforced (no --gate)"
    lines.append(f"**{status}**, {enforced}.")
    lines += [""] + [f"- ✗ {f}" for f in failures] + [f"- note: {n}" for n in gate.get("notes", [])]
    lines += [
        "",
        "## Scores",
        "",
        "| Metric | Value | n | Gate | Definition |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, value in report["scores"].items():
        lines.append(
            f"| {name} | {fmt(name, value)} | {report['support'].get(name, '')} | "
            f"{bound(name, thresholds)} | {_cell(report['definitions'].get(name, ''))} |"
        )
    if report.get("judged"):
        lines += ["", "## LLM-judged metrics", ""]
        lines += [f"- {name}: {value}" for name, value in report["judged"].items()]
    lines += [
        "",
        "## Per matrix row",
        "",
        "| Row | Expected | n | Accuracy | Majority verdict | Consistency |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row, r in report["per_row"].items():
        lines.append(
            f"| {row} | {r['expected']} | {r['n']} | {fmt('', r['accuracy'])} | "
            f"{r['majority']} | {fmt('', r['consistency'])} |"
        )
    lines += ["", "## Per kind", "", "| Kind | Items | Failing |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v['n']} | {v['failing']} |" for k, v in report["per_kind"].items()]
    lines += ["", "## Plots", ""] + [f"![{alt}]({name})" for name, alt in PLOTS.items()]
    failing = [i for i in report["items"] if i["problems"]]
    lines += ["", f"## Failing items ({len(failing)})", ""]
    if failing:
        lines += [
            "| id | kind | Question | Expected | Got | Problems |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i in failing:
            asked = [t["content"] for t in i["history"] if t.get("role") == "user"]
            question = f"{i['question']} (after: {asked[-1]})" if asked else i["question"]
            lines.append(
                f"| {i['id']} | {i['kind']} | {_cell(question)} | {_cell(i['expected'])} "
                f"| {_cell(i['got'])} | {_cell('; '.join(i['problems']))} |"
            )
    else:
        lines.append("None.")
    lines += ["", "Every item's answer, citations and retrieved chunk ids are in report.json.", ""]
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """The three PNGs (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    conf = report["confusion"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.imshow(conf["counts"], cmap="Blues")
    ax.set_xticks(range(len(conf["got"])), [_LABELS[g] for g in conf["got"]])
    ax.set_yticks(range(len(conf["expected"])), [_LABELS[e] for e in conf["expected"]])
    ax.set_xlabel("answered")
    ax.set_ylabel("expected")
    top = max(max(row) for row in conf["counts"]) or 1
    for y, row in enumerate(conf["counts"]):
        for x, count in enumerate(row):
            color = "white" if count > top / 2 else "black"  # readable on dark cells
            ax.text(x, y, str(count), ha="center", va="center", color=color)
    ax.set_title("Verdict confusion matrix")
    paths.append(_save(fig, out / "confusion_matrix.png"))

    rows = report["per_row"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(rows)
    ys = range(len(names))
    ax.barh([y - 0.2 for y in ys], [rows[n]["accuracy"] or 0 for n in names], 0.4, label="accuracy")
    ax.barh(
        [y + 0.2 for y in ys],
        [rows[n]["consistency"] for n in names],
        0.4,
        label="paraphrase consistency",
    )
    ax.set_yticks(list(ys), names)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    ax.set_title("Per matrix row" if names else "Per matrix row (no row items in this run)")
    paths.append(_save(fig, out / "per_row_accuracy.png"))

    totals = [i["total_ms"] for i in report["items"] if i["total_ms"] is not None]
    walls = [i["wall_ms"] for i in report["items"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    if walls:
        ax.hist([totals, walls], bins=30, label=["chain total (timings_ms)", "wall"])
        ax.legend()
    ax.set_xlabel("milliseconds per question")
    ax.set_ylabel("questions")
    ax.set_title("Latency")
    paths.append(_save(fig, out / "latency.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def print_summary(report: dict[str, Any], out_dir: Path) -> None:
    """A rich table of the scores on stdout; gate failures and notes below it."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    run, gate = report["run"], report.get("gate", {})
    table = Table(
        title=f"eval · {run['split']} · {run['n_items']} items · engine {run['engine']}"
        f" · kb {run['kb_version']}"
    )
    for column in ("metric", "value", "n", "gate"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    failed = {f.split(" ", 1)[0].rstrip(":") for f in gate.get("failures", [])}
    for name, value in report["scores"].items():
        style = "red" if name in failed else None
        table.add_row(
            name,
            fmt(name, value),
            str(report["support"].get(name, "")),
            bound(name, gate.get("thresholds", {})),
            style=style,
        )
    console.print(table)
    for name, value in report.get("judged", {}).items():
        console.print(f"{name}: {value}")
    for note in gate.get("notes", []):
        console.print(f"note: {note}")
    failing = sum(1 for i in report["items"] if i["problems"])
    console.print(f"{failing} failing items, listed in {out_dir / 'report.md'}")
    if gate.get("failures"):
        console.print("[bold red]gate FAILED[/]:")
        for failure in gate["failures"]:
            console.print(f"  ✗ {failure}", markup=False)
    else:
        console.print("[green]gate passed[/]")
    sys.stdout.flush()
