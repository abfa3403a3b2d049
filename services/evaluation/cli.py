"""Operator and evaluator CLI: ``python -m services.evaluation.cli --help``.

    evaluations list                      evaluations and their progress
    jobs list [--submission ID] [--state S] / jobs show JOB_ID
    findings list [--submission ID]
    findings submit ...                   sign + publish an ExternalFindingSubmitted (red teams)
    evaluators register|list|remove       the registry of external evaluators
    evaluators key add|rotate|revoke|list their Ed25519 signing keys
    evaluators keygen --out key.pem       a key pair for an evaluator (prints the public key)
    evaluators assign EVALUATOR SUBMISSION / unassign / assignments [--submission ID]
    evidence verify FINDING_ID            the kept Inspect log still matches its sha256

The registry commands are the trust library's (services/trust/cli.py), mounted
under ``evaluators``: key ids are never reused, revocation is final. Manual
findings go through Kafka like any evaluator's signed event, so the service
validates them exactly as it validates events sent by other means; they are
accepted only from evaluators an operator assigned to the submission.
Settings come from the environment (FR_DATABASE_URL, FR_DB_SCHEMA,
FR_TOPIC_PREFIX, FR_EVALUATION_...); the schema is migrated first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from rich.console import Console
from rich.table import Table

from contracts import encode, make_event
from contracts.events import ExternalFindingSubmitted
from contracts.principals import Role
from services.evaluation import queries
from services.evaluation import repository as repo
from services.evaluation.app import SCHEMA
from services.evaluation.findings import EVIDENCE_PREFIX
from services.evaluation.model import Assignment
from services.evaluation.settings import EvaluationSettings
from services.runtime import SYSTEM_CLOCK
from services.runtime.database import connect
from services.runtime.onboarding import KafkaOnboarding
from services.trust import repository as trust_repository
from services.trust.cli import principal_commands
from services.trust.principals import EVALUATOR

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
evaluations_app = typer.Typer(no_args_is_help=True, help="Evaluations of accepted submissions.")
jobs_app = typer.Typer(no_args_is_help=True, help="The leased job queue.")
findings_app = typer.Typer(no_args_is_help=True, help="Automated and manual findings.")
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence kept for findings.")
console = Console()
T = TypeVar("T")


def _database() -> contextlib.AbstractAsyncContextManager[asyncpg.Connection[asyncpg.Record]]:
    return connect(EvaluationSettings(), SCHEMA)


# The trust library's registry commands (register, list, remove, key add|rotate|revoke|
# list), with evaluation's own beside them (keygen, assign, unassign, assignments).
def _onboarding() -> KafkaOnboarding:
    """Registering an evaluator provisions its Kafka principal and answers feed too."""
    return KafkaOnboarding.from_settings(Role.EVALUATOR, EvaluationSettings())


evaluators_app = principal_commands(EVALUATOR, connect=_database, onboarding=_onboarding)
app.add_typer(evaluations_app, name="evaluations")
app.add_typer(jobs_app, name="jobs")
app.add_typer(findings_app, name="findings")
app.add_typer(
    evaluators_app,
    name="evaluators",
    help="External evaluators: the registry, their signing keys, and their assignments.",
)
app.add_typer(evidence_app, name="evidence")


def _db(action: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[T]]) -> T:
    async def run() -> T:
        async with _database() as conn, conn.transaction():
            return await action(conn)

    return asyncio.run(run())


def _table(title: str, rows: list[asyncpg.Record], columns: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


@evaluations_app.command("list")
def evaluations_list(
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
) -> None:
    """Evaluations, newest first."""
    rows = _db(lambda conn: queries.evaluations(conn, limit))
    columns = [
        "submission_id",
        "model_id",
        "registry_version",
        "jobs",
        "completed",
        "ended_by",
        "window_closed_at",
    ]
    _table("evaluations", rows, columns)


@jobs_app.command("list")
def jobs_list(
    submission: Annotated[uuid.UUID | None, typer.Option(help="Only this submission.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, running, completed...")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """Jobs with their state, attempts and lease."""
    rows = _db(lambda conn: queries.jobs(conn, submission, state, limit))
    columns = [
        "job_id",
        "suite_id",
        "state",
        "attempts",
        "max_attempts",
        "lease_owner",
        "lease_expires_at",
        "last_failure",
    ]
    _table("jobs", rows, columns)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[uuid.UUID, typer.Argument(help="The job (see `jobs list`).")],
) -> None:
    """One job: its row, every attempt, its findings."""
    job, attempts, found = _db(lambda conn: queries.job_detail(conn, job_id))
    if job is None:
        console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(1)
    for key, value in dict(job).items():
        console.print(f"[bold]{key}[/bold]: {value}")
    _table(
        "attempts",
        attempts,
        ["attempt", "worker", "outcome", "failure", "error", "evidence_ref", "inspect_seconds"],
    )
    _table("findings", found, ["finding_id", "metric", "score", "stderr", "evidence_ref"])


@findings_app.command("list")
def findings_list(
    submission: Annotated[uuid.UUID | None, typer.Option(help="Only this submission.")] = None,
) -> None:
    """Findings recorded (automated and manual), with their scores."""
    rows = _db(lambda conn: queries.findings(conn, submission))
    columns = ["finding_id", "submission_id", "suite_id", "domain", "metric", "score", "method"]
    _table("findings", rows, columns)


@findings_app.command("submit")
def findings_submit(
    submission: Annotated[uuid.UUID, typer.Option(help="The submission evaluated.")],
    evaluator: Annotated[str, typer.Option(help="Your registered evaluator id.")],
    key_id: Annotated[str, typer.Option(help="Id of your registered signing key.")],
    key_file: Annotated[Path, typer.Option(help="Your Ed25519 private key (PEM).")],
    domain: Annotated[str, typer.Option(help="cyber, bio, chem, nuclear or autonomy.")],
    capability: Annotated[str, typer.Option(help="Capability probed (slug).")],
    score: Annotated[float, typer.Option(help="Normalised score in [0, 1].")],
    metric: Annotated[str, typer.Option(help="What the score measures (slug).")],
    summary: Annotated[str, typer.Option(help="What was found and how.")],
    evidence_ref: Annotated[str, typer.Option(help="Where the evidence is kept.")],
    samples_total: Annotated[int | None, typer.Option(help="Attempts made.")] = None,
    finding_id: Annotated[uuid.UUID | None, typer.Option(help="Your id (default: new).")] = None,
) -> None:
    """Sign a manual finding with your key and publish it to evaluators.findings."""
    settings = EvaluationSettings()
    key = load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise typer.BadParameter("the key file does not hold an Ed25519 private key")
    data: dict[str, Any] = {
        "external_finding_id": finding_id or uuid.uuid4(),
        "submission_id": submission,
        "evaluator_id": evaluator,
        "domain": domain,
        "capability": capability,
        "score": score,
        "metric": metric,
        "samples_total": samples_total,
        "summary": summary,
        "evidence_ref": evidence_ref,
        "observed_at": SYSTEM_CLOCK.now(),
        "signature": {
            "key_id": key_id,
            "algorithm": "ed25519",
            "issued_at": SYSTEM_CLOCK.now(),
            "nonce": secrets.token_urlsafe(18),
            "value": base64.b64encode(bytes(64)).decode(),
        },
    }
    unsigned = ExternalFindingSubmitted.model_validate(data)
    value = base64.b64encode(key.sign(unsigned.signing_bytes())).decode()
    signed = unsigned.model_copy(
        update={"signature": unsigned.signature.model_copy(update={"value": value})}
    )
    event = make_event(signed, source=f"/evaluators/{evaluator}", subject=str(submission))

    async def send() -> None:
        producer = AIOKafkaProducer(**settings.kafka_options(), enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic("evaluators.findings"), encode(event), key=str(submission).encode()
            )
        finally:
            await producer.stop()

    asyncio.run(send())
    console.print(f"published {event.id} (external finding {signed.external_finding_id})")


@evaluators_app.command("keygen")
def evaluators_keygen(out: Annotated[Path, typer.Option(help="Private key file (PEM).")]) -> None:
    """Create an Ed25519 key pair (the private key in a 0600 file); prints the public key
    (base64) for the operator's `evaluators key add EVALUATOR KEY_ID --public-key ...`."""
    key = Ed25519PrivateKey.generate()
    out.touch(mode=0o600)
    out.chmod(0o600)
    out.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    console.print(base64.b64encode(public).decode())


@evaluators_app.command("assign")
def evaluators_assign(
    evaluator_id: Annotated[str, typer.Argument(help="The registered evaluator.")],
    submission: Annotated[uuid.UUID, typer.Argument(help="The submission (UUID).")],
    by: Annotated[str | None, typer.Option(help="Who assigns (default: your login).")] = None,
) -> None:
    """Allow an evaluator's findings about a submission (while its window is open)."""

    async def assign(conn: asyncpg.Connection[asyncpg.Record]) -> str | None:
        # Locked: a concurrent `evaluators remove` waits for this assignment, or wins.
        evaluator = await trust_repository.lock_principal(conn, EVALUATOR.name, evaluator_id)
        if evaluator is None or evaluator.removed_at is not None:
            return f"evaluator {evaluator_id!r} is not registered: `evaluators register` first"
        if not await repo.evaluation_exists(conn, submission):
            return f"submission {submission} is not under evaluation"
        assignment = Assignment(
            evaluator_id, submission, SYSTEM_CLOCK.now(), by or getpass.getuser()
        )
        if not await repo.assign(conn, assignment):
            return f"{evaluator_id} is assigned to {submission} already"
        return None

    problem = _db(assign)
    if problem is not None:
        console.print(f"[red]{problem}[/red]")
        raise typer.Exit(1)
    console.print(f"{evaluator_id} assigned to {submission}")


@evaluators_app.command("unassign")
def evaluators_unassign(
    evaluator_id: Annotated[str, typer.Argument(help="The assigned evaluator.")],
    submission: Annotated[uuid.UUID, typer.Argument(help="The submission (UUID).")],
) -> None:
    """Refuse the evaluator's further findings about the submission (recorded ones stay)."""
    if not _db(lambda conn: repo.unassign(conn, evaluator_id, submission)):
        console.print(f"[red]{evaluator_id} is not assigned to {submission}[/red]")
        raise typer.Exit(1)
    console.print(f"{evaluator_id} unassigned from {submission}")


@evaluators_app.command("assignments")
def evaluators_assignments(
    submission: Annotated[uuid.UUID | None, typer.Option(help="Only this submission.")] = None,
) -> None:
    """Which evaluators may report findings on which submissions."""
    rows = _db(lambda conn: queries.assignments(conn, submission))
    _table("assignments", rows, ["evaluator_id", "submission_id", "assigned_at", "assigned_by"])


@evidence_app.command("verify")
def evidence_verify(
    finding_id: Annotated[uuid.UUID, typer.Argument(help="The automated finding (UUID).")],
) -> None:
    """Recompute the SHA-256 of a finding's Inspect log and compare it with the finding's."""
    settings = EvaluationSettings()
    row = _db(lambda conn: queries.finding(conn, finding_id))
    if row is None or row["evidence_sha256"] is None:
        console.print(f"[red]no automated finding {finding_id}[/red]")
        raise typer.Exit(1)
    name = str(row["evidence_ref"]).removeprefix(f"{EVIDENCE_PREFIX}/")
    path = settings.evaluation_inspect_log_dir / name
    actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    if actual != row["evidence_sha256"]:
        console.print(f"[red]MISMATCH[/red] {path}: {actual} != {row['evidence_sha256']}")
        raise typer.Exit(1)
    console.print(f"OK {path} sha256 {actual}")


if __name__ == "__main__":
    app()
