"""The risk service's CLI: policies, escalations and reviewers' decisions, the reviewer
registry, the audit log, the STIX export.

    python -m services.risk.cli policies list
    python -m services.risk.cli policies assessments thresholds-2026.2
    python -m services.risk.cli escalations list [--all] [--json]
    python -m services.risk.cli escalations show <escalation-id>
    python -m services.risk.cli decide <escalation-id> --reviewer r1 --key r1.key --key-id k1 \
        (--restrict --scope order.yaml | --monitor | --dismiss | --lift-interim) \
        --justification "..."
    python -m services.risk.cli reviewers keygen r1.key
    python -m services.risk.cli reviewers register r1 --name "Reviewer One"
    python -m services.risk.cli reviewers key add r1 k1 --public-key r1.pub
    python -m services.risk.cli reviewers key rotate|revoke|list ...; reviewers list|remove
    python -m services.risk.cli audit keygen
    python -m services.risk.cli audit verify [--public-key KEY_ID=FILE ...]
    python -m services.risk.cli audit checkpoint
    python -m services.risk.cli stix export <submission-id> [--out bundle.json] [--tlp amber]

Settings come from FR_* variables (FR_DATABASE_URL, FR_DB_SCHEMA, FR_KAFKA_BOOTSTRAP,
FR_TOPIC_PREFIX, FR_RISK_*). The schema is migrated first, so reviewers can be
registered before the service ever ran. Refusals print ``error: ...`` on stderr and
exit 1; a decision that got no answer exits 3.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts import ContractViolation, parse_json
from contracts.events.risk import EscalationDecision
from contracts.principals import Role
from services.risk import keys, queries
from services.risk.app import SCHEMA, RiskService, StartupError, build_service
from services.risk.audit import ChainReport, verify_chain
from services.risk.model import Escalation
from services.risk.policy import PolicyError, ThresholdsPolicy, available_policies, load_policy
from services.risk.reviewer import DecisionError, build_decision, load_order, submit
from services.risk.settings import RiskSettings
from services.risk.stix_export import Tlp, export_bundle
from services.runtime.database import connect
from services.runtime.onboarding import KafkaOnboarding
from services.trust.cli import parse_time, principal_commands
from services.trust.principals import REVIEWER
from services.trust.public_keys import parse_public_key

if TYPE_CHECKING:
    from services.runtime.database import Connection

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    help="frontier-review risk: policies, escalations, reviewers' decisions, audit, STIX.",
)
policies_app = typer.Typer(no_args_is_help=True, help="Thresholds policy versions and their use.")
escalations_app = typer.Typer(no_args_is_help=True, help="Escalations awaiting the reviewers.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained, signed audit log.")
stix_app = typer.Typer(no_args_is_help=True, help="STIX 2.1 export for government systems.")
app.add_typer(policies_app, name="policies")
app.add_typer(escalations_app, name="escalations")
app.add_typer(audit_app, name="audit")
app.add_typer(stix_app, name="stix")
out = Console()
err = Console(stderr=True)


def settings() -> RiskSettings:
    return RiskSettings()


def database() -> AbstractAsyncContextManager[Connection]:
    """A connection to the migrated risk schema (the trust tables included)."""
    return connect(settings(), SCHEMA)


def run(work: Callable[[Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        async with database() as conn:
            return await work(conn)

    return asyncio.run(main())


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def say(text: str) -> None:
    out.print(escape(text), highlight=False, soft_wrap=True)


def uuid_arg(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        fail(f"{value!r} is not {what} (a UUID)")


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}" if moment else "-"


# --- reviewers: the trust library's registry commands, plus keygen -----------------------------


def onboarding() -> KafkaOnboarding:
    """Registering a reviewer provisions its Kafka principal and answers feed too."""
    return KafkaOnboarding.from_settings(Role.REVIEWER, settings())


reviewers_app = principal_commands(REVIEWER, connect=database, onboarding=onboarding)
app.add_typer(reviewers_app, name="reviewers")


@reviewers_app.command(
    "keygen",
    help="Make a reviewer's Ed25519 key pair: FILE, and its public key beside it (suffix .pub).",
)
def reviewer_keygen(
    path: Annotated[
        Path, typer.Argument(help="Where the private key goes (kept by the reviewer).")
    ],
) -> None:
    try:
        keys.generate(path)
    except keys.KeyFileError as exc:
        fail(str(exc))
    say(
        f"wrote {path} (private, keep it) and {keys.public_path(path)}; register the public "
        f"key: reviewers key add <reviewer> <key-id> --public-key {keys.public_path(path)}"
    )


# --- policies --------------------------------------------------------------------------------


@policies_app.command("list", help="Policy versions: those run with, and the files available.")
def policies_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    config = settings()
    uses = {u.version: u for u in run(queries.policy_uses)}
    files = {p.version for p in available_policies(config.risk_policy_dir)}
    rows: list[dict[str, Any]] = []
    for version in sorted(files | set(uses)):
        use = uses.get(version)
        rows.append(
            {
                "version": version,
                "active": version == config.risk_policy_version,
                "file": version in files,
                "sha256": use.sha256 if use else None,
                "first_used_at": use.first_used_at.isoformat() if use else None,
                "assessments": use.assessments if use else 0,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("version", "active", "file", "first used", "assessments", "sha256")
    for row in rows:
        table.add_row(
            row["version"],
            "yes" if row["active"] else "",
            "yes" if row["file"] else "missing",
            row["first_used_at"] or "never",
            str(row["assessments"]),
            (row["sha256"] or "")[:16],
        )
    out.print(table)


@policies_app.command("assessments", help="The assessments that used a policy version.")
def policies_assessments(
    version: Annotated[str, typer.Argument(help="e.g. thresholds-2026.2")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    found = run(lambda conn: queries.assessments_using(conn, version))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "assessment_id": str(a.assessment_id),
                        "submission_id": str(a.submission_id),
                        "model_id": a.model_id,
                        "sequence": a.sequence,
                        "overall_level": a.overall_level,
                        "escalation_required": a.escalation_required,
                        "evaluation_incomplete": a.evaluation_incomplete,
                        "assessed_at": a.assessed_at.isoformat(),
                    }
                    for a in found
                ],
                indent=2,
            )
        )
        return
    table = Table("assessed", "submission", "model", "#", "level", "escalation", "incomplete")
    for a in found:
        table.add_row(
            _when(a.assessed_at),
            str(a.submission_id),
            a.model_id,
            str(a.sequence),
            a.overall_level,
            "yes" if a.escalation_required else "",
            "yes" if a.evaluation_incomplete else "",
        )
    out.print(table)
    say(f"{len(found)} assessment(s) used {version}")


# --- escalations -----------------------------------------------------------------------------


def _progress(escalation: Escalation) -> str:
    tallies = escalation.tallies()
    if not tallies:
        return f"0/{escalation.reviewers_required}"
    parts = []
    for (decision, sha), signers in tallies:
        what = f"{decision}" + (f" {sha[:12]}" if sha else "")
        parts.append(
            f"{what}: {len(signers)}/{escalation.reviewers_required} ({', '.join(signers)})"
        )
    return "; ".join(parts)


def _escalation_json(e: Escalation) -> dict[str, Any]:
    return {
        "escalation_id": str(e.escalation_id),
        "submission_id": str(e.submission_id),
        "model_id": e.model_id,
        "status": e.status.value,
        "level": e.level.value,
        "domains": [d.value for d in e.domains],
        "decide_by": e.decide_by.isoformat(),
        "reviewers_required": e.reviewers_required,
        "interim_order_id": str(e.interim_order_id) if e.interim_in_force else None,
        "tallies": [
            {"decision": d.value, "order_sha256": sha, "signed_by": signers}
            for (d, sha), signers in e.tallies()
        ],
    }


@escalations_app.command("list", help="Escalations awaiting a decision, with quorum progress.")
def escalations_list(
    include_closed: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    found = run(lambda conn: queries.escalations(conn, include_closed=include_closed))
    if as_json:
        print(json.dumps([_escalation_json(e) for e in found], indent=2))
        return
    table = Table("escalation", "model", "level", "domains", "decide by", "status", "signatures")
    for e in found:
        table.add_row(
            str(e.escalation_id),
            e.model_id,
            e.level.value,
            ", ".join(e.domains),
            _when(e.decide_by),
            e.status.value + (" (interim order)" if e.interim_in_force else ""),
            _progress(e),
        )
    out.print(table)


@escalations_app.command("show", help="One escalation: its votes and the orders signed.")
def escalations_show(
    escalation_id: Annotated[str, typer.Argument(help="The escalation (UUID).")],
) -> None:
    wanted = uuid_arg(escalation_id, "an escalation id")

    async def work(conn: Connection) -> tuple[Escalation | None, dict[UUID, str]]:
        return await queries.escalation(conn, wanted), await queries.justifications(conn, wanted)

    found, texts = run(work)
    if found is None:
        fail(f"no escalation {wanted}")
    print(json.dumps(_escalation_json(found), indent=2))
    for vote in found.votes:
        say(
            f"- {vote.reviewer_id} {vote.decision} {vote.order_sha256 or ''} "
            f"at {_when(vote.accepted_at)}"
        )
        say(f"  {texts.get(vote.decision_id, '')}")
        if vote.order is not None:
            say("  order: " + vote.order.model_dump_json(exclude_none=True))


# --- decide ------------------------------------------------------------------------------------


@app.command(help="Sign a decision on an escalation, submit it, and wait for the answer.")
def decide(
    escalation_id: Annotated[str, typer.Argument(help="The escalation (UUID).")],
    reviewer: Annotated[str, typer.Option(help="Your registered reviewer id.")],
    key: Annotated[Path, typer.Option(help="Your private key file (reviewers keygen).")],
    key_id: Annotated[str, typer.Option(help="The id your public key is registered under.")],
    justification: Annotated[str, typer.Option(help="Why: your written justification.")],
    restrict: Annotated[bool, typer.Option("--restrict", help="Confirm with an order.")] = False,
    scope: Annotated[
        Path | None, typer.Option(help="--restrict: the order file (scope and times, YAML).")
    ] = None,
    monitor: Annotated[bool, typer.Option("--monitor", help="Keep monitoring.")] = False,
    dismiss: Annotated[bool, typer.Option("--dismiss", help="No restriction.")] = False,
    lift_interim: Annotated[
        bool, typer.Option("--lift-interim", help="Lift the interim order.")
    ] = False,
    effective_at: Annotated[str | None, typer.Option(help="Order time (ISO 8601).")] = None,
    expires_at: Annotated[str | None, typer.Option(help="Order expiry (ISO 8601).")] = None,
    compliance_deadline: Annotated[
        str | None, typer.Option(help="By when the lab acknowledges (ISO 8601).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    chosen = [
        d
        for d, flag in (
            (EscalationDecision.RESTRICT, restrict),
            (EscalationDecision.MONITOR, monitor),
            (EscalationDecision.NO_RESTRICTION, dismiss),
            (EscalationDecision.LIFT_INTERIM, lift_interim),
        )
        if flag
    ]
    if len(chosen) != 1:
        fail("choose exactly one of --restrict, --monitor, --dismiss, --lift-interim", 2)
    decision = chosen[0]
    if (decision is EscalationDecision.RESTRICT) != (scope is not None):
        fail("--scope (the order file) goes with --restrict, and only with it", 2)
    wanted = uuid_arg(escalation_id, "an escalation id")
    config = settings()
    try:
        private = keys.load(key)
    except keys.KeyFileError as exc:
        fail(str(exc))
    found = run(lambda conn: queries.escalation(conn, wanted))
    if found is None:
        fail(f"no escalation {wanted}")
    try:
        order = (
            load_order(
                scope,
                effective_at=parse_time(effective_at, "--effective-at"),
                expires_at=parse_time(expires_at, "--expires-at"),
                compliance_deadline=parse_time(compliance_deadline, "--compliance-deadline"),
            )
            if scope is not None
            else None
        )
        signed = build_decision(
            escalation_id=found.escalation_id,
            submission_id=found.submission_id,
            reviewer_id=reviewer,
            key_id=key_id,
            key=private,
            decision=decision,
            justification=justification,
            order=order,
            interim_order_id=found.interim_order_id
            if decision is EscalationDecision.LIFT_INTERIM
            else None,
        )
    except DecisionError as exc:
        fail(str(exc))
    try:
        answer = asyncio.run(submit(config, signed, within_s=timeout))
    except TimeoutError as exc:
        fail(str(exc), 3)
    if not answer.accepted:
        fail(answer.summary)
    say(answer.summary)


# --- audit -------------------------------------------------------------------------------------


@audit_app.command("keygen", help="Make the service's audit key (FR_RISK_SERVICE_KEY_FILE).")
def audit_keygen(
    path: Annotated[
        Path | None, typer.Argument(help="Default: the FR_RISK_SERVICE_KEY_FILE setting.")
    ] = None,
) -> None:
    target = path or settings().risk_service_key_file
    try:
        keys.generate(target)
    except keys.KeyFileError as exc:
        fail(str(exc))
    say(f"wrote {target}; publish {keys.public_path(target)} to whoever verifies the log")


def trusted_keys(config: RiskSettings, extra: list[str]) -> dict[str, bytes]:
    """Key id -> public key the log may be signed with: the service's configured key (its
    .pub file, or derived from the private key), plus retired ones given as ID=FILE."""
    found: dict[str, bytes] = {}
    public = keys.public_path(config.risk_service_key_file)
    try:
        if public.is_file():
            found[config.risk_service_key_id] = parse_public_key(public.read_text())
        else:
            key = keys.load(config.risk_service_key_file)
            found[config.risk_service_key_id] = key.public_key().public_bytes_raw()
    except (keys.KeyFileError, ValueError) as exc:
        if not extra:
            fail(f"no key to verify with: {exc}; give --public-key KEY_ID=FILE")
    for item in extra:
        key_id, _, file = item.partition("=")
        if not key_id or not file:
            fail(f"--public-key takes KEY_ID=FILE, not {item!r}", 2)
        try:
            found[key_id] = parse_public_key(Path(file).read_text())
        except (OSError, ValueError) as exc:
            fail(f"--public-key {item}: {exc}", 2)
    return found


async def published_checkpoints(config: RiskSettings) -> list[dict[str, Any]]:
    """Every AuditCheckpoint data object on gov.audit (one partition), as received."""
    topic = config.topic("gov.audit")
    consumer = AIOKafkaConsumer(
        **config.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            for record in batch.get(partition, []):
                try:
                    document = parse_json(record.value or b"", external=True)
                except ContractViolation:
                    continue
                data = document.get("data") if isinstance(document, dict) else None
                if isinstance(data, dict):
                    found.append(data)
    finally:
        await consumer.stop()
    return found


def _distinct(checkpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for cp in checkpoints:
        seen.setdefault(json.dumps(cp, sort_keys=True), cp)
    return list(seen.values())


@audit_app.command(
    "verify",
    help="Walk the whole chain against the checkpoints published on gov.audit and stored; "
    "exit 1 naming the first broken entry.",
)
def audit_verify(
    public_key: Annotated[
        list[str] | None,
        typer.Option(help="A retired key the log may be signed with: KEY_ID=FILE (repeatable)."),
    ] = None,
) -> None:
    config = settings()
    trusted = trusted_keys(config, public_key or [])

    async def work(conn: Connection) -> tuple[list[Any], list[dict[str, Any]], tuple[int, str]]:
        return (
            await queries.audit_entries(conn),
            await queries.stored_checkpoints(conn),
            await queries.audit_head(conn),
        )

    entries, stored, (head_size, head_sha) = run(work)
    published = asyncio.run(published_checkpoints(config))
    report = verify_chain(entries, _distinct(published + stored), trusted)
    last = entries[-1] if entries else None
    head_problem = None
    if head_size != (last.sequence if last else 0) or (last and head_sha != last.entry_sha256):
        head_problem = (
            f"the head row says {head_size} entries ({head_sha[:16]}...), the log ends at "
            f"entry {last.sequence if last else 0}"
        )
    _print_report(report, len(published), len(stored), head_problem)
    if report.first_broken is not None or report.bad_checkpoints or head_problem:
        raise typer.Exit(1)


def _print_report(
    report: ChainReport, published: int, stored: int, head_problem: str | None
) -> None:
    say(
        f"{report.entries} entries; {report.checkpoints_verified} checkpoint(s) verified "
        f"({published} published on gov.audit, {stored} stored)"
    )
    first = report.first_broken
    if first is not None:
        err.print(
            f"[red]BROKEN[/red] first broken entry: {first.sequence}: {first.kind}: "
            f"{escape(first.detail)}",
            highlight=False,
            soft_wrap=True,
        )
        for problem in report.problems[1:]:
            err.print(f"  also entry {problem.sequence}: {problem.kind}: {escape(problem.detail)}")
    for bad in report.bad_checkpoints:
        err.print(f"[red]bad checkpoint[/red] (size {bad.size}): {escape(bad.detail)}")
    if head_problem:
        err.print(f"[red]head mismatch[/red]: {escape(head_problem)}")
    if first is None and not report.bad_checkpoints and not head_problem:
        say("intact: every entry links, hashes and verifies; every checkpoint matches")


@audit_app.command(
    "checkpoint", help="Publish a signed checkpoint of the head now (besides the periodic ones)."
)
def audit_checkpoint() -> None:
    config = settings()

    async def main() -> None:
        service = build_service(config)
        assert isinstance(service, RiskService)
        await service.open_database()  # the service's start checks: key, policy version
        try:
            async with service.transaction() as ctx:
                await service.handlers.checkpoint(ctx)
        finally:
            await service.close()

    try:
        asyncio.run(main())
    except (PolicyError, StartupError) as exc:
        fail(str(exc))
    say("checkpoint queued for gov.audit (the service's relay publishes it)")


# --- STIX ---------------------------------------------------------------------------------


def _policy_of(
    config: RiskSettings, version: str, recorded: tuple[str, str] | None
) -> ThresholdsPolicy:
    """The policy an assessment named: its file if unchanged, else the text recorded."""
    path = config.risk_policy_dir / f"{version}.yaml"
    if path.is_file():
        policy = load_policy(path)
        if recorded is None or recorded[0] == policy.sha256:
            return policy
    if recorded is None:
        fail(f"policy {version} is neither in {config.risk_policy_dir} nor recorded")
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / f"{version}.yaml"
        copy.write_text(recorded[1])
        return load_policy(copy)


@stix_app.command("export", help="A submission's findings and assessment as a STIX 2.1 bundle.")
def stix_export(
    submission_id: Annotated[str, typer.Argument(help="The submission (UUID).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Default: stdout.")] = None,
    tlp: Annotated[Tlp, typer.Option(help="TLP 2.0 marking.")] = Tlp.AMBER,
) -> None:
    config = settings()
    wanted = uuid_arg(submission_id, "a submission id")
    record = run(lambda conn: queries.submission_record(conn, wanted))
    if record is None:
        fail(f"risk knows no submission {wanted}")
    if record.assessment is None:
        fail(f"submission {wanted} has not been assessed yet")
    version = record.assessment.policy_version
    recorded = run(lambda conn: queries.policy_content(conn, version))
    policy = _policy_of(config, version, recorded)
    text = export_bundle(record.findings, record.assessment, policy, tlp=tlp).serialize(pretty=True)
    if out_file is None:
        sys.stdout.write(text + "\n")
    else:
        out_file.write_text(text + "\n")
        say(f"wrote {out_file}: {len(record.findings)} finding(s), TLP:{tlp.value.upper()}")


if __name__ == "__main__":
    app()
