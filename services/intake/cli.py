"""Intake's operator CLI: the lab registry and keys, and submission status.

    python -m services.intake.cli lab register example-lab --name "Example Lab"
    python -m services.intake.cli lab key add example-lab key-2026-01 --public-key lab.pub
    python -m services.intake.cli lab key rotate example-lab key-2026-07 --public-key new.pub
    python -m services.intake.cli lab key revoke example-lab key-2026-01 --reason compromised
    python -m services.intake.cli lab publish [example-lab]
    python -m services.intake.cli status 0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01 [--json]
    python -m services.intake.cli refusals [--hours 24]

The lab registry commands are the trust library's (services/trust/cli.py), mounted
under ``lab``: intake owns the registry of labs and their keys. ``lab register``
also provisions the lab's Kafka side (its feeds labs.<id>.answers and
labs.<id>.policies, its ACLs, its SCRAM credential written to
FR_TENANT_CREDENTIALS_DIR/lab.<id>.json), as the operator
(FR_KAFKA_OPERATOR_CREDENTIALS_FILE); ``lab remove`` revokes it. Every change of a
lab's entry is written, in its transaction, to intake's outbox as the lab's whole
entry on intake.registry (services/intake/lab_registry.py), which the running
intake service publishes and access applies; ``lab publish`` announces the
current entries again (e.g. labs registered before the topic existed).

Settings come from FR_* variables (FR_DATABASE_URL, FR_DB_SCHEMA); the
intake schema is migrated first, so the registry can be filled before the
service ever ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar
from uuid import UUID

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from contracts.principals import Role
from services.intake import queries
from services.intake.app import SCHEMA
from services.intake.lab_registry import publish_entry
from services.intake.model import SubmissionStatus
from services.intake.settings import IntakeSettings
from services.runtime.database import connect
from services.runtime.onboarding import KafkaOnboarding
from services.trust import repository as trust_repository
from services.trust.cli import principal_commands
from services.trust.principals import LAB

if TYPE_CHECKING:
    from services.runtime.database import Connection

T = TypeVar("T")

app = typer.Typer(
    help="frontier-review intake: the lab registry and its keys, submission status, refusals.",
    no_args_is_help=True,
)
console = Console()


def _database() -> contextlib.AbstractAsyncContextManager[asyncpg.Connection[asyncpg.Record]]:
    return connect(IntakeSettings(), SCHEMA)


def _onboarding() -> KafkaOnboarding:
    return KafkaOnboarding.from_settings(Role.LAB, IntakeSettings())


async def _publish(conn: Connection, lab_id: str, at: datetime) -> None:
    await publish_entry(conn, lab_id, at, settings=IntakeSettings())


labs_app = principal_commands(LAB, connect=_database, onboarding=_onboarding, changed=_publish)
app.add_typer(labs_app, name="lab")


def _run(work: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _database() as conn:
            return await work(conn)

    return asyncio.run(main())


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@labs_app.command("publish")
def publish(
    lab_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="Only this lab (default: every lab).")
    ] = None,
) -> None:
    """Announce labs' registry entries on intake.registry again, each under a new version
    (e.g. labs registered before access received the registry by events)."""

    async def work(conn: asyncpg.Connection[asyncpg.Record]) -> list[tuple[str, int]]:
        found = await trust_repository.list_principals(conn, LAB.name, include_removed=True)
        ids = [p.principal_id for p in found if lab_id is None or p.principal_id == lab_id]
        published = []
        for one in ids:
            async with conn.transaction():
                published.append(
                    (
                        one,
                        await publish_entry(
                            conn, one, datetime.now(UTC), settings=IntakeSettings()
                        ),
                    )
                )
        return published

    published = _run(work)
    if lab_id is not None and not published:
        _fail(f"lab {lab_id} is not registered")
    for one, version in published:
        console.print(f"published lab {one}'s entry, version {version}", highlight=False)


@app.command("status")
def status(
    submission_id: Annotated[str, typer.Argument(help="The submission id (UUID).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A submission's state and history: received, decision, window deadline, withdrawn/closed."""
    try:
        wanted = UUID(submission_id)
    except ValueError:
        _fail(f"{submission_id!r} is not a submission id (UUID)")
        return
    found = _run(lambda conn: queries.fetch_status(conn, wanted))
    if found is None:
        _fail(f"intake knows no submission {wanted}")
        return
    if as_json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        _print_status(found)


@app.command("refusals")
def refusals(
    hours: Annotated[int, typer.Option(help="How far back, in hours.")] = 24,
) -> None:
    """Refused input that could not speak for a submission (unauthenticated, or naming
    another lab's id), counted per claimed sender, hour and reason."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    table = Table("hour", "claimed lab", "reason", "refused", "last input event")
    for count in _run(lambda conn: queries.refusal_counts(conn, since)):
        table.add_row(
            f"{count.hour:%Y-%m-%d %H:00}",
            count.source,
            count.reason,
            str(count.refused),
            count.last_event_id or "",
        )
    console.print(table)


def _print_status(status: SubmissionStatus) -> None:
    console.print(f"[bold]submission {status.submission_id}[/bold]: {status.state}")
    for label, value in (
        ("lab", status.lab_id),
        ("model", status.model_id),
        ("decision", f"{status.reason}: {status.detail}" if status.reason else status.detail),
        ("received", status.received_at),
        (
            "window",
            f"{status.review_days} days, deadline {status.deadline}" if status.deadline else None,
        ),
        ("withdrawn", status.withdrawn_at),
        ("closed", status.closed_at),
    ):
        if value is not None:
            console.print(f"  {label:10} {value}")
    table = Table("at", "what", "reason", "input event", "detail")
    for entry in status.history:
        table.add_row(
            f"{entry.at:%Y-%m-%d %H:%M:%S}",
            entry.kind,
            entry.reason or "",
            entry.event_id or "",
            entry.detail,
        )
    console.print(table)


if __name__ == "__main__":
    app()
