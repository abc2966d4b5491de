"""Terminal rendering of an `Answer` (rich)."""

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from app.answer import Answer

_STYLES = {"node": "bold green", "python": "bold blue", "tie": "bold yellow"}


def print_answer(answer: Answer, console: Console | None = None) -> None:
    """Verdict, answer and numbered sources, readable in a terminal."""
    console = console or Console()
    if answer.abstained or answer.verdict is None:
        title = Text("Not covered" if answer.abstained else "Facts", style="bold magenta")
    else:
        title = Text(f"Verdict: {answer.verdict_label}", style=_STYLES[answer.verdict])
    console.print(Panel(Markdown(answer.answer), title=title, title_align="left"))
    for c in answer.citations:
        console.print(Text.assemble((f"[{c.n}] ", "bold"), (c.section, "cyan"), f"  ({c.source})"))
        console.print(Text(f"    “{c.quote}”", style="dim"))
    if answer.flags:
        console.print(Text("; ".join(answer.flags), style="yellow"))
