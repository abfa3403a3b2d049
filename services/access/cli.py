"""The access service's operator commands.

    python -m services.access.cli preview --order proposed.json --sample customers.csv
        [--current orders.jsonl] [--format csv|jsonl] [--at 2026-02-01T00:00:00Z]
        [--action invoke] [--changed-out changed.csv] [--strict] [--json]
    python -m services.access.cli compile --order order.json [--order ...]

``--order`` is a RestrictionOrdered (its ``data`` as JSON); ``--current`` holds
the orders in force, one JSON object per line. The sample format is described
in services/access/README.md (and ``services.access.sample``). Exit codes: 0 ok,
1 unusable input (order, sample header, strict mode and a malformed row).
"""

from __future__ import annotations

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
from services.access.compile import compile_policy
from services.access.country_groups import DEFAULT_FILE, load_country_groups
from services.access.model import Refusal
from services.access.preview import ChangedPrincipal, ImpactReport, MalformedSample, preview_impact
from services.access.sample import SampleError, SampleFormat

app = typer.Typer(help="frontier-review access service: policies and impact previews.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _order(path: Path) -> RestrictionOrdered:
    try:
        return RestrictionOrdered.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        _fail(f"{path}: not a RestrictionOrdered: {exc}")
        raise


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


def _report_json(report: ImpactReport) -> dict[str, Any]:
    return {
        "model_id": report.model_id,
        "at": report.at.isoformat(),
        "action": report.action.value,
        "current_order_ids": report.current_order_ids,
        "proposed_order_ids": report.proposed_order_ids,
        "rows": report.rows,
        "evaluated": report.evaluated,
        "malformed": report.malformed,
        "malformed_rows": [{"line": r.line, "error": r.error} for r in report.malformed_rows],
        "denied_current": report.denied_current,
        "denied_proposed": report.denied_proposed,
        "newly_denied": report.newly_denied,
        "newly_allowed": report.newly_allowed,
        "denied_by_reason": dict(report.denied_by_reason.most_common()),
        "denied_by_country": dict(report.denied_by_country.most_common()),
        "newly_denied_by_reason": dict(report.newly_denied_by_reason.most_common()),
        "newly_denied_by_country": dict(report.newly_denied_by_country.most_common()),
        "changed": [
            {"line": c.line, "principal_id": c.principal_id, "reasons": list(c.reasons)}
            for c in report.changed
        ],
        "changed_truncated": report.changed_truncated,
    }


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
    order: Annotated[Path, typer.Option(help="The proposed RestrictionOrdered (JSON).")],
    sample: Annotated[Path, typer.Option(help="Customers: CSV or JSON lines.")],
    current: Annotated[
        Path | None, typer.Option(help="Orders in force, one JSON per line.")
    ] = None,
    fmt: Annotated[SampleFormat | None, typer.Option("--format")] = None,
    at: Annotated[datetime | None, typer.Option(help="Decision time (default: now, UTC).")] = None,
    action: Annotated[Action, typer.Option()] = Action.INVOKE,
    groups: Annotated[Path, typer.Option(help="Country-group table.")] = DEFAULT_FILE,
    changed_out: Annotated[
        Path | None, typer.Option(help="Write every allowed->denied principal (CSV).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed row.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report how many of the sample a proposed order would deny, by reason and country."""
    proposed = _order(order)
    in_force = _orders(current)
    table = load_country_groups(groups)
    when = (at or datetime.now(UTC)).astimezone(UTC) if at is None or at.tzinfo else None
    if when is None:
        _fail("--at needs a UTC offset, e.g. 2026-02-01T00:00:00+00:00")
        return
    kind = fmt or (
        SampleFormat.JSONL if sample.suffix in {".jsonl", ".ndjson"} else SampleFormat.CSV
    )
    changed_file = changed_out.open("w", encoding="utf-8") if changed_out else None

    def write_changed(changed: ChangedPrincipal) -> None:
        if changed_file is not None:
            changed_file.write(
                f"{changed.line},{json.dumps(changed.principal_id)},{';'.join(changed.reasons)}\n"
            )

    if changed_file is not None:
        changed_file.write("line,principal_id,reasons\n")
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
        sys.stdout.write(json.dumps(_report_json(result), indent=2) + "\n")
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


if __name__ == "__main__":
    app()
