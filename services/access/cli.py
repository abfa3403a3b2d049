"""The access service's operator commands.

    python -m services.access.cli preview --order proposed.json --sample customers.csv
        [--current orders.jsonl] [--format csv|jsonl] [--at 2026-02-01T00:00:00Z]
        [--action invoke] [--changed-out changed.csv] [--strict] [--json]
    python -m services.access.cli compile --order order.json [--order ...]
    python -m services.access.cli models [--lab LAB] [--json]
    python -m services.access.cli policy MODEL_ID [--version N]
    python -m services.access.cli lab list [--all] [--json]; lab key list [LAB] [--json]

``--order`` is a RestrictionOrdered (its ``data`` as JSON). The preview compares
it with the model's current policy as the access service enforces it (read from
the access schema: FR_DATABASE_URL, FR_DB_SCHEMA), or, with ``--current``, with
the orders in that file (one JSON object per line; no database needed). The
sample format is described in services/access/README.md (and
``services.access.sample``). Exit codes: 0 ok, 1 unusable input (order, sample
header, strict mode and a malformed row, unknown model), 2 bad arguments.

The ``lab`` commands show the labs' public keys that acknowledgements are
verified with, in access's own schema: a copy of intake's registry, which access
receives on intake.registry and applies (services/trust/replica.py). They change
nothing: labs and keys are registered, rotated, revoked and removed in intake's
registry only (``frontier-review labs ...``).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from contracts.events.risk import RestrictionOrdered
from contracts.policy.cedar import Action
from services.access import queries
from services.access.app import MIGRATIONS
from services.access.compile import compile_policy
from services.access.country_groups import DEFAULT_FILE, load_country_groups
from services.access.model import ModelPolicy
from services.access.preview import (
    ChangedPrincipal,
    ImpactReport,
    MalformedSample,
    preview_impact,
    report_json,
)
from services.access.proposal import proposed_order
from services.access.sample import SampleError, SampleFormat
from services.access.settings import AccessSettings
from services.runtime.database import connect
from services.trust import TRUST_SQL
from services.trust.cli import principal_commands
from services.trust.principals import LAB
from services.trust.refusal import Refusal

app = typer.Typer(help="frontier-review access service: policies and impact previews.")
console = Console(stderr=True)


def database() -> Any:
    """A connection to access's migrated schema (settings from FR_* variables)."""
    return connect(AccessSettings(), (TRUST_SQL, MIGRATIONS))


labs_app = principal_commands(LAB, connect=database, read_only=True)
app.add_typer(labs_app, name="lab")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _order(path: Path) -> RestrictionOrdered:
    try:
        return RestrictionOrdered.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        _fail(f"{path}: not a RestrictionOrdered: {exc}")
        raise


def _proposal(path: Path, model_id: str | None, at: datetime) -> RestrictionOrdered:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")
        raise
    proposed = proposed_order(text, model_id=model_id, at=at)
    if isinstance(proposed, Refusal):
        _fail(f"{path}: {proposed.detail}")
        raise typer.Exit(1)  # _fail exits; this tells the type checker
    return proposed


def _orders(path: Path | None) -> list[RestrictionOrdered]:
    if path is None:
        return []
    orders = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if line.strip():
            try:
                orders.append(RestrictionOrdered.model_validate_json(line))
            except ValidationError as exc:
                _fail(f"{path}:{number}: not a RestrictionOrdered: {exc}")
    return orders


def _lines(handle: BinaryIO, progress: Progress, task: Any) -> Iterator[bytes]:
    for line in handle:
        progress.advance(task, len(line))
        yield line


def _print(report: ImpactReport) -> None:
    out = Console()
    out.print(
        f"[bold]{report.model_id}[/bold] at {report.at.isoformat()} ({report.action.value}): "
        f"{report.evaluated} principals evaluated, {report.malformed} malformed rows"
    )
    out.print(
        f"denied now: {report.denied_current}   denied with the order: {report.denied_proposed}"
        f"   [red]allowed -> denied: {report.newly_denied}[/red]"
        f"   denied -> allowed: {report.newly_allowed}"
    )
    for title, counter in (
        ("newly denied by reason", report.newly_denied_by_reason),
        ("newly denied by country (any citizenship or residency)", report.newly_denied_by_country),
    ):
        table = Table(title=title)
        table.add_column("")
        table.add_column("principals", justify="right")
        for key, count in counter.most_common(20):
            table.add_row(key, str(count))
        out.print(table)
    for row in report.malformed_rows[:20]:
        out.print(f"[yellow]line {row.line}:[/yellow] {row.error}")


@app.command()
def preview(
    order: Annotated[
        Path,
        typer.Option(
            help="The proposed order: a RestrictionOrdered (JSON), or the reviewer's order "
            "file (YAML, as risk.cli decide --scope takes it) with --model-id."
        ),
    ],
    sample: Annotated[Path, typer.Option(help="Customers: CSV or JSON lines.")],
    model_id: Annotated[
        str | None, typer.Option(help="The model a reviewer's order file is for.")
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(
            help="Orders in force, one JSON per line (default: the model's current policy "
            "in the access schema)."
        ),
    ] = None,
    fmt: Annotated[
        SampleFormat | None,
        typer.Option("--format", help="The sample's format (default: by its suffix)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Decision time, ISO 8601 with offset (default: now)."),
    ] = None,
    action: Annotated[Action, typer.Option(help="The action asked about.")] = Action.INVOKE,
    groups: Annotated[Path, typer.Option(help="Country-group table.")] = DEFAULT_FILE,
    changed_out: Annotated[
        Path | None, typer.Option(help="Write every allowed->denied principal (CSV).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report how many of the sample a proposed order would deny, by reason and country."""
    try:
        parsed = datetime.fromisoformat(at) if at is not None else datetime.now(UTC)
    except ValueError:
        _fail(f"--at {at!r} is not an ISO 8601 time, e.g. 2026-02-01T00:00:00+00:00")
        return
    if parsed.tzinfo is None:
        _fail("--at needs a UTC offset, e.g. 2026-02-01T00:00:00+00:00")
        return
    when = parsed.astimezone(UTC)
    proposed = _proposal(order, model_id, when)
    published: ModelPolicy | None = None
    if current is not None:
        in_force = _orders(current)
    else:
        basis = asyncio.run(_basis(proposed.model_id))
        in_force, published = basis.in_force, basis.published
    table = load_country_groups(groups)
    kind = fmt or (
        SampleFormat.JSONL if sample.suffix in {".jsonl", ".ndjson"} else SampleFormat.CSV
    )
    changed_file = changed_out.open("w", encoding="utf-8", newline="") if changed_out else None
    changed_csv = csv.writer(changed_file) if changed_file is not None else None

    def write_changed(changed: ChangedPrincipal) -> None:
        if changed_csv is not None:  # csv quotes what needs it: ids are the lab's, any text
            changed_csv.writerow([changed.line, changed.principal_id, ";".join(changed.reasons)])

    if changed_csv is not None:
        changed_csv.writerow(["line", "principal_id", "reasons"])
    columns = (TextColumn("preview"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    try:
        with sample.open("rb") as handle, Progress(*columns, console=console) as progress:
            task = progress.add_task("rows", total=sample.stat().st_size)
            result = preview_impact(
                proposed,
                in_force,
                _lines(handle, progress, task),
                fmt=kind,
                groups=table,
                at=when,
                action=action,
                stop_on_malformed=strict,
                on_changed=write_changed if changed_file else None,
                published=published,
            )
    except (SampleError, MalformedSample, OSError) as exc:
        _fail(str(exc))
        return
    finally:
        if changed_file is not None:
            changed_file.close()
    if isinstance(result, Refusal):
        _fail(f"{result.reason}: {result.detail}")
        return
    if as_json:
        sys.stdout.write(json.dumps(report_json(result), indent=2) + "\n")
    else:
        _print(result)


@app.command("compile")
def compile_command(
    order: Annotated[list[Path], typer.Option(help="A RestrictionOrdered (JSON); repeatable.")],
    groups: Annotated[Path, typer.Option(help="Country-group table.")] = DEFAULT_FILE,
) -> None:
    """Print the validated Cedar policy set the orders (of one model) compile to."""
    orders = [_order(path) for path in order]
    result = compile_policy(orders[0].model_id, orders, load_country_groups(groups))
    if isinstance(result, Refusal):
        _fail(f"{result.reason}: {result.detail}")
        return
    sys.stdout.write(result.cedar_policies)
    console.print(f"content hash {result.content_hash}")


async def _basis(model_id: str) -> queries.PreviewBasis:
    async with database() as conn:
        return await queries.preview_basis(conn, model_id)


@app.command()
def models(
    lab: Annotated[str | None, typer.Option(help="Only this lab's models.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every restricted model: current version, orders, compliance, problems (alerts)."""

    async def read() -> list[queries.ModelSummary]:
        async with database() as conn:
            return await queries.models(conn, lab)

    found = asyncio.run(read())
    if as_json:
        rows = [
            {
                "model_id": m.model_id,
                "lab_id": m.lab_id,
                "version": m.version,
                "order_ids": m.order_ids,
                "published_at": m.published_at.isoformat(),
                "acknowledge_by": m.acknowledge_by.isoformat(),
                "acknowledged": m.acknowledged,
                "overdue": m.overdue,
                "problems": m.problems,
            }
            for m in found
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("model", "version", "orders", "acknowledge by", "compliance", "problems")
    for m in found:
        compliance = "acknowledged" if m.acknowledged else ("OVERDUE" if m.overdue else "pending")
        table.add_row(
            m.model_id,
            str(m.version),
            str(len(m.order_ids)),
            m.acknowledge_by.isoformat(timespec="seconds"),
            compliance,
            "; ".join(m.problems) or "-",
        )
    Console().print(table)


@app.command()
def policy(
    model_id: Annotated[str, typer.Argument(help="The model id, <lab>/<name>@<version>.")],
    version: Annotated[int | None, typer.Option(help="Default: the current version.")] = None,
) -> None:
    """Print a published version's Cedar text (its hash and orders on stderr)."""

    async def read() -> ModelPolicy | None:
        async with database() as conn:
            return await queries.policy(conn, model_id, version)

    found = asyncio.run(read())
    if found is None:
        _fail(f"no policy version {version or 'at all'} for {model_id}")
        return
    sys.stdout.write(found.cedar_policies)
    console.print(
        f"version {found.version}, content hash {found.content_hash}, "
        f"orders {', '.join(map(str, found.order_ids)) or '-'}"
    )
    for problem in found.problems:
        console.print(f"[red]problem:[/red] {problem}")


if __name__ == "__main__":
    app()
