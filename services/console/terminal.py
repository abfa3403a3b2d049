"""The console's views for a terminal (rich): the waterfall and the status table."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text

from services.console.model import SubmissionView
from services.console.stuck import Stuck
from services.console.text import left, milliseconds, when
from services.console.waterfall import Waterfall

SERVICE_STYLES = {"intake": "blue", "evaluation": "magenta", "risk": "red", "access": "green"}
LEVEL_STYLES = {"low": "green", "moderate": "yellow", "high": "dark_orange", "critical": "bold red"}


def bar(offset_ms: float, duration_ms: float, total_ms: float, width: int) -> Text:
    """A span's bar on a line of ``width`` cells: where it starts, how long it lasts."""
    total = max(total_ms, 1e-9)
    start = min(width - 1, int(offset_ms / total * width))
    length = max(1, round(duration_ms / total * width))
    length = min(length, width - start)
    return Text(" " * start + "█" * length + " " * (width - start - length))


def waterfall_table(wf: Waterfall, *, bar_width: int = 40) -> Table:
    table = Table(
        title=f"trace {wf.trace_id}: {len(wf.rows)} spans, {milliseconds(wf.total_ms)}",
        title_justify="left",
        show_edge=False,
    )
    table.add_column("service", no_wrap=True)
    table.add_column("span", overflow="fold")
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for row in wf.rows:
        style = "red" if row.error else SERVICE_STYLES.get(row.service, "cyan")
        name = Text("  " * row.depth) + Text(row.name)  # Text: names are never markup
        if row.orphan:
            name.append(" (parent not in file)", style="dim")
        if row.linked:
            name.append(" (linked: a trace of its own)", style="dim")
        table.add_row(
            Text(row.service, style=SERVICE_STYLES.get(row.service, "cyan")),
            name,
            f"+{milliseconds(row.offset_ms)}",
            milliseconds(row.duration_ms),
            Text(str(bar(row.offset_ms, row.duration_ms, wf.total_ms, bar_width)), style=style),
        )
    return table


def status_table(rows: list[tuple[SubmissionView, list[Stuck]]], now: datetime) -> Table:
    table = Table(title=f"submissions at {when(now)}", title_justify="left", show_edge=False)
    for name in ("submission", "lab", "model", "state", "window deadline", "level", "stuck"):
        table.add_column(name, overflow="fold")
    for view, stuck in rows:
        deadline = view.intake.deadline
        window = Text(when(deadline))
        if deadline is not None:
            window.append(f"\n{left(deadline, now)}", style="dim")
        level = Text(view.level or "—", style=LEVEL_STYLES.get(view.level or "", ""))
        problems = Text()
        for index, item in enumerate(stuck):
            if index:
                problems.append("\n")
            problems.append(f"{item.stage}", style="bold dark_orange")
            problems.append(f" waits on {item.waiting_on} ({_for(item, now)}): {item.detail}")
        if not stuck:
            problems.append("moving", style="green")
        table.add_row(
            Text(str(view.submission_id)),
            Text(view.lab_id or "—"),
            Text(view.model_id or "—"),
            Text(view.state.value),
            window,
            level,
            problems,
        )
    return table


def _for(item: Stuck, now: datetime) -> str:
    seconds = int(item.waited(now).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
