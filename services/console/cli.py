"""The console's commands for operators (a typer app, ``app``).

    python -m services.console.cli status [--stuck] [--limit N] [--json] [--fail-on-stuck]
    python -m services.console.cli traces SUBMISSION_ID [--file PATH] [--all-services] [--json]

``status`` lists submissions with their state, window deadline and any stuck stage
(where a submission has waited longer than expected, and on what; thresholds
``FR_CONSOLE_*``). ``traces`` prints a submission's trace (the traceparent of its
SubmissionAccepted) as a waterfall, from the local trace file. Both read the console's
schema (FR_DATABASE_URL, FR_DB_SCHEMA=console), which the running console service
keeps. Exit codes: 0 ok, 1 unknown submission / no trace / database unreachable /
--fail-on-stuck and something is stuck, 2 bad arguments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
import typer
from rich.console import Console

from services.console import queries
from services.console.app import MIGRATIONS
from services.console.model import SubmissionView
from services.console.settings import ConsoleSettings
from services.console.stuck import Stuck, stuck_stages
from services.console.terminal import status_table, waterfall_table
from services.console.traces import read_trace
from services.runtime.database import connect

app = typer.Typer(
    help="frontier-review console: what the agency's topics say of each submission.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(1)


def _read(work: Coroutine[Any, Any, T]) -> T:
    """Run a read of the console's schema; an unreachable or refusing database is a
    message and exit 1, not a traceback (the URL is not shown: it holds a password)."""
    try:
        return asyncio.run(work)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        err.print(
            f"[red]error:[/red] cannot read the console's schema (FR_DATABASE_URL, "
            f"FR_DB_SCHEMA): {type(exc).__name__}: {exc}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(1) from None


async def _views(settings: ConsoleSettings, now: datetime, limit: int) -> list[SubmissionView]:
    async with connect(settings, [MIGRATIONS]) as conn:
        return await queries.submissions(
            conn, now=now, grace=settings.compliance_grace, limit=limit
        )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@app.command()
def status(
    stuck_only: Annotated[
        bool, typer.Option("--stuck", help="Only the submissions with a stuck stage.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many submissions (newest first).")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    fail_on_stuck: Annotated[
        bool, typer.Option("--fail-on-stuck", help="Exit 1 when any stage is stuck.")
    ] = False,
) -> None:
    """Submissions with their state, window deadline and any stuck stage."""
    settings = ConsoleSettings()
    now = datetime.now(UTC)
    views = _read(_views(settings, now, limit))
    rows: list[tuple[SubmissionView, list[Stuck]]] = [
        (view, stuck_stages(view, now, settings.thresholds)) for view in views
    ]
    if stuck_only:
        rows = [(view, stuck) for view, stuck in rows if stuck]
    if as_json:
        document = [
            {
                "submission_id": str(view.submission_id),
                "lab_id": view.lab_id,
                "model_id": view.model_id,
                "state": view.state.value,
                "deadline": _plain(view.intake.deadline),
                "level": view.level,
                "stuck": [_plain(asdict(item)) for item in stuck],
            }
            for view, stuck in rows
        ]
        print(json.dumps(document, indent=2))
    elif rows:
        out.print(status_table(rows, now))
    else:
        out.print("no submission" + (" is stuck" if stuck_only else " yet"))
    if fail_on_stuck and any(stuck for _, stuck in rows):
        raise typer.Exit(1)


async def _trace_id(settings: ConsoleSettings, submission_id: UUID) -> SubmissionView | None:
    async with connect(settings, [MIGRATIONS]) as conn:
        return await queries.submission(
            conn, submission_id, now=datetime.now(UTC), grace=settings.compliance_grace
        )


@app.command()
def traces(
    submission_id: Annotated[UUID, typer.Argument(help="The submission whose trace to show.")],
    file: Annotated[
        Path | None, typer.Option(help="The trace file (default FR_CONSOLE_TRACES_FILE).")
    ] = None,
    all_services: Annotated[
        bool, typer.Option("--all-services", help="Include the console's own spans.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The rows as JSON.")] = False,
) -> None:
    """A submission's trace as a waterfall (from the services' local trace file)."""
    settings = ConsoleSettings()
    view = _read(_trace_id(settings, submission_id))
    if view is None:
        _fail(f"the console knows no submission {submission_id}")
        return
    if view.trace_id is None:
        _fail(f"no trace is known for {submission_id} (no SubmissionAccepted with a traceparent)")
        return
    path = file or settings.console_traces_file
    hide = () if all_services else tuple(settings.console_hide_services)
    read = read_trace(path, view.trace_id, hide=hide)
    if not read.file_found:
        _fail(f"no trace file at {path} (the services write it with FR_OTEL_EXPORTER=jsonl)")
    if not read.waterfall.rows:
        _fail(f"no span of trace {view.trace_id} in {path} yet")
    if as_json:
        rows = [_plain(asdict(row)) for row in read.waterfall.rows]
        print(json.dumps({"trace_id": view.trace_id, "rows": rows}, indent=2))
        return
    out.print(waterfall_table(read.waterfall))
    if read.dropped:
        err.print(f"{read.dropped} more spans not shown")


if __name__ == "__main__":
    app()
