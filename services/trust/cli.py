"""The operator commands for a key registry, written once for every kind of principal.

A service's CLI mounts them under the kind's name::

    app.add_typer(principal_commands(LAB, connect=database), name="lab")

    <cli> lab register example-lab --name "Example Lab"
    <cli> lab list [--all] [--json]
    <cli> lab remove example-lab --reason "left the programme" [--yes]
    <cli> lab key add example-lab key-2026-01 --public-key lab.pub [--valid-from/--valid-until ISO]
    <cli> lab key rotate example-lab key-2026-07 --public-key new.pub --overlap-hours 72
    <cli> lab key revoke example-lab key-2026-01 --reason compromised [--yes]
    <cli> lab key list [example-lab] [--json]

``connect`` opens a connection to the service's migrated schema (search_path set).
``changed`` (optional) is called in the transaction of every change of a principal's
entry (register, remove, key add, rotate, revoke) with the connection, the principal's
id and the time: the owner of a registry publishes the entry from it through its
outbox (intake: ``intake.registry``), so the event commits or rolls back with the
change. ``read_only`` keeps only ``list`` and ``key list``: for a service that holds a
copy of a registry another service owns (access: labs).
``onboarding`` (optional) gives a registered principal the rest of what it needs
beyond its key entry (its Kafka principal, ACLs and feeds): ``register`` runs it
before the registry row is written, ``remove`` after the keys are revoked.
Every refusal prints ``error: ...`` on stderr and exits 1; bad arguments exit 2.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.trust import registry, repository
from services.trust.principals import PrincipalKey, PrincipalKind, key_state
from services.trust.public_keys import parse_public_key
from services.trust.refusal import Refusal

if TYPE_CHECKING:
    from services.runtime.database import Connection

T = TypeVar("T")
Connect = Callable[[], AbstractAsyncContextManager["Connection"]]
Changed = Callable[["Connection", str, datetime], Awaitable[None]]

PUBLIC_KEY_HELP = (
    "The Ed25519 public key: a file holding it (PEM, OpenSSH 'ssh-ed25519 ...' or base64), "
    "or the base64 of its 32 raw bytes."
)
TIME_HELP = "ISO 8601 time, e.g. 2026-07-01T00:00:00+00:00 (no offset means UTC)"


class Onboarding(Protocol):
    """What else a principal gets when it is registered, and loses when removed.

    Both are idempotent and raise (with a message for the operator) on failure;
    both return one line saying what they did."""

    async def register(self, principal_id: str) -> str: ...

    async def remove(self, principal_id: str) -> str: ...


def system_now() -> datetime:
    return datetime.now(UTC)


def read_public_key(value: str) -> bytes:
    """The key from a file or inline text; typer.BadParameter saying what is wrong."""
    path = Path(value)
    is_file = len(value) < 4096 and path.is_file()
    try:
        text = path.read_text() if is_file else value
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {value}: {exc}", param_hint="--public-key") from None
    if "PRIVATE KEY" in text:
        raise typer.BadParameter(
            "that is a private key: give the public key (keep the private key where it is)",
            param_hint="--public-key",
        )
    try:
        return parse_public_key(text)
    except ValueError as exc:
        where = f"the file {value}" if is_file else "the value (no file of that name)"
        raise typer.BadParameter(f"{where}: {exc}", param_hint="--public-key") from None


def parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an {TIME_HELP}", param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S %Z}" if value is not None else "-"


def principal_commands(
    kind: PrincipalKind,
    *,
    connect: Connect,
    clock: Callable[[], datetime] = system_now,
    onboarding: Callable[[], Onboarding] | None = None,
    changed: Changed | None = None,
    read_only: bool = False,
) -> typer.Typer:
    """``register``, ``list``, ``remove`` and ``key add|rotate|revoke|list`` for ``kind``
    (``list`` and ``key list`` only when ``read_only``)."""
    noun = kind.noun
    out = Console()
    err = Console(stderr=True)
    app = typer.Typer(
        no_args_is_help=True,
        help=f"Register, list and remove {noun}s, and manage their Ed25519 signing keys.",
    )
    keys = typer.Typer(
        no_args_is_help=True,
        help=f"Add, rotate, revoke and list {noun}s' keys. Key ids and keys are never reused; "
        "revocation is final.",
    )
    app.add_typer(keys, name="key")

    # Parameter declarations with this kind's help texts, one object per parameter.
    def id_arg() -> Any:
        return typer.Argument(..., metavar="ID", help=f"The {noun}'s id (a slug, e.g. acme).")

    def key_arg() -> Any:
        return typer.Argument(
            ..., metavar="KEY_ID", help="The key id the signer puts in signature.key_id."
        )

    def key_opt() -> Any:
        return typer.Option(..., "--public-key", help=PUBLIC_KEY_HELP)

    def json_opt() -> Any:
        return typer.Option(False, "--json", help="Print JSON instead of a table.")

    def yes_opt() -> Any:
        return typer.Option(False, "--yes", help="Do not ask for confirmation.")

    def reason_opt() -> Any:
        return typer.Option(None, help="Why (kept for the audit).")

    def run(work: "Callable[[Connection], Awaitable[T]]") -> T:
        async def main() -> T:
            async with connect() as conn:
                return await work(conn)

        return asyncio.run(main())

    def change(
        principal_id: str, now: datetime, work: "Callable[[Connection], Awaitable[T]]"
    ) -> "Callable[[Connection], Awaitable[T]]":
        """``work`` (a registry operation) and, if it changed the entry, ``changed``: one
        transaction."""

        async def changing(conn: "Connection") -> T:
            async with conn.transaction():
                result = await work(conn)
                if changed is not None and not isinstance(result, Refusal):
                    await changed(conn, principal_id, now)
                return result

        return changing

    def onboarding_failed(exc: Exception) -> NoReturn:
        detail = escape(f"{type(exc).__name__}: {exc}")
        err.print(f"[red]error:[/red] onboarding: {detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None

    def onboard() -> Onboarding:
        assert onboarding is not None
        try:
            return onboarding()
        except Exception as exc:  # its settings: say why and stop
            onboarding_failed(exc)

    def fail(refusal: Refusal) -> NoReturn:
        detail = escape(refusal.detail)  # "[::1]:8900" is not markup
        err.print(f"[red]error:[/red] {detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)

    def confirm(what: str, yes: bool) -> None:
        if not yes and not typer.confirm(f"{what} This cannot be undone. Continue?"):
            err.print("nothing changed")
            raise typer.Exit(1)

    @app.command("register", help=f"Register {kind.a_noun}; its keys are added with `key add`.")
    def register(
        principal_id: str = id_arg(),
        name: Annotated[str, typer.Option(help="Display name (default: the id).")] = "",
    ) -> None:
        now = clock()
        display = name or principal_id

        async def register_all(conn: "Connection") -> tuple[Refusal | None, str | None]:
            refusal = await registry.registrable(conn, kind, principal_id, display)
            if refusal is not None:
                return refusal, None
            # The rest first: once the registry row exists, the principal's input is
            # accepted and answered, and its answers need its feeds.
            try:
                done = await onboard().register(principal_id) if onboarding else None
            except Exception as exc:  # nothing is registered: the operator may retry
                onboarding_failed(exc)
            registering = change(
                principal_id, now, lambda c: registry.register(c, kind, principal_id, display, now)
            )
            return await registering(conn), done

        refusal, done = run(register_all)
        if refusal is not None:
            fail(refusal)
        out.print(f"registered {noun} {principal_id}", highlight=False, soft_wrap=True)
        if done:
            out.print(done, highlight=False, soft_wrap=True)

    @app.command("list", help=f"The registered {noun}s and how many keys each was given.")
    def list_principals(
        include_removed: Annotated[
            bool, typer.Option("--all", help=f"Include removed {noun}s.")
        ] = False,
        as_json: bool = json_opt(),
    ) -> None:
        found = run(
            lambda conn: repository.list_principals(
                conn, kind.name, include_removed=include_removed
            )
        )
        if as_json:
            rows: list[dict[str, Any]] = [
                {
                    "id": p.principal_id,
                    "name": p.name,
                    "registered_at": p.registered_at.isoformat(),
                    "removed_at": p.removed_at.isoformat() if p.removed_at else None,
                    "keys": p.keys,
                }
                for p in found
            ]
            print(json.dumps(rows, indent=2))
            return
        table = Table(noun, "name", "registered", "removed", "keys")
        for p in found:
            table.add_row(
                p.principal_id, p.name, _when(p.registered_at), _when(p.removed_at), str(p.keys)
            )
        out.print(table)

    @app.command(
        "remove",
        help=f"Remove {kind.a_noun} for good: its keys are revoked, its id is never used again.",
    )
    def remove(
        principal_id: str = id_arg(),
        reason: str | None = reason_opt(),
        yes: bool = yes_opt(),
    ) -> None:
        confirm(f"Remove {noun} {principal_id} and revoke all its keys?", yes)
        now = clock()
        result = run(
            change(principal_id, now, lambda c: registry.remove(c, kind, principal_id, now, reason))
        )
        if isinstance(result, Refusal):
            fail(result)
        revoked = f"; revoked keys: {', '.join(result)}" if result else ""
        out.print(f"removed {noun} {principal_id}{revoked}", highlight=False, soft_wrap=True)
        if onboarding:
            try:
                done = asyncio.run(onboard().remove(principal_id))
            except Exception as exc:  # the keys are revoked; `principals remove` finishes it
                onboarding_failed(exc)
            out.print(done, highlight=False, soft_wrap=True)

    @keys.command(
        "add", help=f"Register a public key for {kind.a_noun} (a new key id and a new key pair)."
    )
    def add_key(
        principal_id: str = id_arg(),
        key_id: str = key_arg(),
        public_key: str = key_opt(),
        valid_from: Annotated[str | None, typer.Option(help=f"{TIME_HELP}; default now.")] = None,
        valid_until: Annotated[
            str | None, typer.Option(help=f"{TIME_HELP}; default: no end.")
        ] = None,
    ) -> None:
        now = clock()
        key = PrincipalKey(
            kind=kind.name,
            principal_id=principal_id,
            key_id=key_id,
            public_key=read_public_key(public_key),
            valid_from=parse_time(valid_from, "--valid-from") or now,
            valid_until=parse_time(valid_until, "--valid-until"),
            revoked_at=None,
        )
        refusal = run(change(principal_id, now, lambda c: registry.add_key(c, kind, key, now)))
        if refusal is not None:
            fail(refusal)
        until = f" until {_when(key.valid_until)}" if key.valid_until else ""
        out.print(
            f"added key {key_id} for {noun} {principal_id}, valid from {_when(key.valid_from)}"
            f"{until}",
            highlight=False,
            soft_wrap=True,
        )

    @keys.command(
        "rotate", help=f"Add a key valid now; the {noun}'s other keys expire after the overlap."
    )
    def rotate_key(
        principal_id: str = id_arg(),
        key_id: str = key_arg(),
        public_key: str = key_opt(),
        overlap_hours: Annotated[
            float,
            typer.Option(
                min=0, help="How long the principal's other keys stay valid, then expire."
            ),
        ] = 24.0,
    ) -> None:
        raw = read_public_key(public_key)
        now = clock()
        overlap = timedelta(hours=overlap_hours)
        result = run(
            change(
                principal_id,
                now,
                lambda c: registry.rotate_key(c, kind, principal_id, key_id, raw, now, overlap),
            )
        )
        if isinstance(result, Refusal):
            fail(result)
        out.print(f"added key {key_id} for {noun} {principal_id}", highlight=False, soft_wrap=True)
        for old in result.ended:
            out.print(
                f"key {old} stays valid until {_when(result.until)}",
                highlight=False,
                soft_wrap=True,
            )

    @keys.command(
        "revoke",
        help="Revoke a key at once and for good: whatever it signs is refused from now on.",
    )
    def revoke_key(
        principal_id: str = id_arg(),
        key_id: str = key_arg(),
        reason: str | None = reason_opt(),
        yes: bool = yes_opt(),
    ) -> None:
        confirm(f"Revoke key {key_id} of {noun} {principal_id}?", yes)
        now = clock()
        refusal = run(
            change(
                principal_id,
                now,
                lambda c: registry.revoke_key(c, kind, principal_id, key_id, now, reason),
            )
        )
        if refusal is not None:
            fail(refusal)
        out.print(f"revoked key {key_id} of {noun} {principal_id}", highlight=False, soft_wrap=True)

    @keys.command(
        "list",
        help="Keys with their validity windows and state (valid, not yet valid, expired, revoked).",
    )
    def list_keys(
        principal_id: Annotated[
            str | None, typer.Argument(help=f"Only this {noun}'s keys.")
        ] = None,
        as_json: bool = json_opt(),
    ) -> None:
        now = clock()
        found = run(lambda conn: repository.list_keys(conn, kind.name, principal_id))
        if as_json:
            rows: list[dict[str, Any]] = [
                {
                    noun: k.principal_id,
                    "key_id": k.key_id,
                    "valid_from": k.valid_from.isoformat(),
                    "valid_until": k.valid_until.isoformat() if k.valid_until else None,
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    "state": key_state(k, now).value,
                }
                for k in found
            ]
            print(json.dumps(rows, indent=2))
            return
        table = Table(noun, "key id", "valid from", "valid until", "state")
        for k in found:
            state = key_state(k, now).value
            if k.revoked_at is not None:
                state = f"revoked {_when(k.revoked_at)}"
            table.add_row(
                k.principal_id, k.key_id, _when(k.valid_from), _when(k.valid_until), state
            )
        out.print(table)

    if read_only:  # a copy of a registry another service owns: look, never change
        app.registered_commands[:] = [c for c in app.registered_commands if c.name == "list"]
        keys.registered_commands[:] = [c for c in keys.registered_commands if c.name == "list"]
        keys.info.help = f"The {noun}s' keys, with their validity windows and state."
        app.info.help = f"The {noun}s and their keys (a copy: changed only by their owner)."
    return app
