"""Intake's operator CLI: the lab registry and keys, and submission status.

    python -m services.intake.cli lab register example-lab --name "Example Lab"
    python -m services.intake.cli key add example-lab key-2026-01 --public-key lab.pub
    python -m services.intake.cli key rotate example-lab key-2026-07 --public-key new.pub \
        --overlap-hours 72
    python -m services.intake.cli key revoke example-lab key-2026-01 --reason compromised
    python -m services.intake.cli status 0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01 [--json]

Settings come from FR_* variables (FR_DATABASE_URL, FR_DB_SCHEMA); the
intake schema is migrated first, so the registry can be filled before the
service ever ran.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar
from uuid import UUID

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from services.intake import repository
from services.intake.app import MIGRATIONS
from services.intake.settings import IntakeSettings
from services.intake.status import SubmissionStatus
from services.intake.trust import LabKey, parse_public_key
from services.runtime.database import connect

T = TypeVar("T")

app = typer.Typer(help="frontier-review intake: lab registry, keys, submission status.")
lab_app = typer.Typer(help="Register and list labs.")
key_app = typer.Typer(help="Add, rotate, revoke and list lab keys.")
app.add_typer(lab_app, name="lab")
app.add_typer(key_app, name="key")
console = Console()

LabArg = Annotated[str, typer.Argument(help="The lab's id (a slug, e.g. example-lab).")]
KeyArg = Annotated[str, typer.Argument(help="The key id the lab puts in signature.key_id.")]
PublicKeyOpt = Annotated[
    str,
    typer.Option(
        "--public-key",
        help="Ed25519 public key: a file (PEM or base64) or the base64 of its 32 raw bytes.",
    ),
]


def _run(work: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with connect(IntakeSettings(), [MIGRATIONS]) as conn:
            return await work(conn)

    return asyncio.run(main())


def _public_key(value: str) -> bytes:
    path = Path(value)
    text = path.read_text() if len(value) < 4096 and path.is_file() else value
    try:
        return parse_public_key(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--public-key") from exc


def _when(value: str | None, default: datetime | None) -> datetime | None:
    if value is None:
        return default
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@lab_app.command("register")
def register_lab(
    lab_id: LabArg, name: Annotated[str, typer.Option(help="Display name.")] = ""
) -> None:
    """Register a lab (its keys are added with `key add`)."""
    if not _run(lambda conn: repository.register_lab(conn, lab_id, name or lab_id)):
        _fail(f"lab {lab_id} is registered already")
    console.print(f"registered lab {lab_id}")


@lab_app.command("list")
def list_labs() -> None:
    """The registered labs and how many keys each has."""
    table = Table("lab", "name", "registered", "keys")
    for lab in _run(repository.list_labs):
        table.add_row(lab.lab_id, lab.name, f"{lab.registered_at:%Y-%m-%d %H:%M}", str(lab.keys))
    console.print(table)


def _add_key(key: LabKey, *, end_others_at: datetime | None = None) -> list[str]:
    async def work(conn: asyncpg.Connection[asyncpg.Record]) -> list[str]:
        async with conn.transaction():
            if not await repository.lab_exists(conn, key.lab_id):
                raise LookupError(f"lab {key.lab_id} is not registered")
            await repository.add_key(conn, key)
            if end_others_at is None:
                return []
            return await repository.end_other_keys(conn, key.lab_id, key.key_id, end_others_at)

    try:
        return _run(work)
    except LookupError as exc:
        _fail(str(exc))
    except asyncpg.UniqueViolationError:
        _fail(f"lab {key.lab_id} has a key {key.key_id} already; choose a new key id")
    return []


@key_app.command("add")
def add_key(
    lab_id: LabArg,
    key_id: KeyArg,
    public_key: PublicKeyOpt,
    valid_from: Annotated[str | None, typer.Option(help="ISO time; default now.")] = None,
    valid_until: Annotated[str | None, typer.Option(help="ISO time; default none.")] = None,
) -> None:
    """Register a public key for a lab."""
    now = datetime.now(UTC)
    key = LabKey(
        lab_id=lab_id,
        key_id=key_id,
        public_key=_public_key(public_key),
        valid_from=_when(valid_from, now) or now,
        valid_until=_when(valid_until, None),
        revoked_at=None,
    )
    _add_key(key)
    console.print(
        f"added key {key_id} for lab {lab_id}, valid from {key.valid_from:%Y-%m-%d %H:%M:%S %Z}"
    )


@key_app.command("rotate")
def rotate_key(
    lab_id: LabArg,
    key_id: KeyArg,
    public_key: PublicKeyOpt,
    overlap_hours: Annotated[
        float, typer.Option(help="How long the lab's other keys stay valid.")
    ] = 24.0,
) -> None:
    """Add a new key now; the lab's other keys stay valid for the overlap, then expire."""
    now = datetime.now(UTC)
    until = now + timedelta(hours=overlap_hours)
    key = LabKey(lab_id, key_id, _public_key(public_key), now, None, None)
    ended = _add_key(key, end_others_at=until)
    console.print(f"added key {key_id} for lab {lab_id}")
    for old in ended:
        console.print(f"key {old} stays valid until {until:%Y-%m-%d %H:%M:%S %Z}")


@key_app.command("revoke")
def revoke_key(
    lab_id: LabArg,
    key_id: KeyArg,
    reason: Annotated[str | None, typer.Option(help="Why (kept for the audit).")] = None,
) -> None:
    """Revoke a key at once: everything it signs from now on is refused."""
    now = datetime.now(UTC)
    if not _run(lambda conn: repository.revoke_key(conn, lab_id, key_id, now, reason)):
        _fail(f"lab {lab_id} has no unrevoked key {key_id}")
    console.print(f"revoked key {key_id} of lab {lab_id}")


@key_app.command("list")
def list_keys(lab_id: Annotated[str | None, typer.Argument(help="Only this lab.")] = None) -> None:
    """Keys with their validity windows."""
    now = datetime.now(UTC)
    table = Table("lab", "key id", "valid from", "valid until", "state")
    for key in _run(lambda conn: repository.list_keys(conn, lab_id)):
        if key.revoked_at is not None:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
        elif key.valid_until is not None and key.valid_until <= now:
            state = "expired"
        elif key.valid_from > now:
            state = "not yet valid"
        else:
            state = "valid"
        until = f"{key.valid_until:%Y-%m-%d %H:%M}" if key.valid_until else "-"
        table.add_row(key.lab_id, key.key_id, f"{key.valid_from:%Y-%m-%d %H:%M}", until, state)
    console.print(table)


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
    found = _run(lambda conn: repository.fetch_status(conn, wanted))
    if found is None:
        _fail(f"intake knows no submission {wanted}")
        return
    if as_json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        _print_status(found)


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
