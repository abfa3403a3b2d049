"""``frontier-review``: the agency's command line, one tree over every service's commands.

This is the composition root of the command lines, the only module that imports
several services' CLIs; it adds no behaviour of its own beyond two thin wrappers
(``principals`` and ``outbox``, whose commands live in the runtime as argparse
programs). Each service keeps its own CLI (``python -m services.<name>.cli``), and
``python -m services.<name>`` still starts the service.

    frontier-review labs register acme --name "Acme AI"      (intake's lab registry)
    frontier-review labs key add acme k1 --public-key acme.pub
    frontier-review reviewers register r1 / evaluators register e1 ...
    frontier-review submission status <submission-id>
    frontier-review escalations list; frontier-review decide <escalation-id> ...
    frontier-review preview --order proposed.json --sample customers.csv
    frontier-review audit verify; frontier-review stix export <submission-id>
    frontier-review principals add government cyber-cert --out cert.json
    frontier-review outbox parked --schema intake

Settings come from the same FR_* variables the services read (FR_DATABASE_URL,
FR_KAFKA_*, FR_TOPIC_PREFIX ...).
"""

from __future__ import annotations

import copy
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.access import cli as access
from services.console import cli as console
from services.evaluation import cli as evaluation
from services.intake import cli as intake
from services.risk import cli as risk
from services.runtime import outbox, principals

TENANTS = "Tenants and their keys"
REVIEW = "A submission's review"
EVIDENCE = "Audit and government systems"
OPERATIONS = "Operations"

app = typer.Typer(
    name="frontier-review",
    help="frontier-review for the agency's operators and reviewers: tenants and their keys, "
    "submissions, evaluations, escalations and decisions, impact previews, orders and "
    "policies, the audit log, STIX exports, Kafka principals and the outbox.",
    epilog="Each service's own commands: python -m services.<name>.cli --help. "
    "Labs use frontier-lab.",
    no_args_is_help=True,
    add_completion=False,
)


def mount_command(
    target: typer.Typer,
    source: typer.Typer,
    name: str,
    *,
    as_name: str | None = None,
    panel: str | None = None,
) -> None:
    """Mount the command ``name`` of ``source`` on ``target``, help and options unchanged."""
    for info in source.registered_commands:
        registered = info.name or (
            info.callback.__name__.replace("_", "-") if info.callback else ""
        )
        if registered == name:
            mounted = copy.copy(info)
            mounted.name = as_name or name
            mounted.rich_help_panel = panel
            target.registered_commands.append(mounted)
            return
    raise LookupError(f"no command {name!r} to mount")


def mount_group(
    target: typer.Typer, source: typer.Typer, name: str, *, help: str, panel: str | None = None
) -> None:
    """Mount the typer app ``source`` as the group ``name`` of ``target``."""
    target.add_typer(source, name=name, help=help, rich_help_panel=panel)


# --- tenants and their keys ------------------------------------------------------------------

mount_group(
    app,
    intake.labs_app,
    "labs",
    help="Labs: register, list and remove them; their signing keys (`labs key`). Registering "
    "a lab provisions its Kafka principal and feeds; removing it revokes them. Every change "
    "reaches access on intake.registry (`labs publish` announces the entries again).",
    panel=TENANTS,
)
mount_group(
    app,
    evaluation.evaluators_app,
    "evaluators",
    help="External evaluators (red teams): the registry, their keys, a key pair (`keygen`), "
    "and which submissions each may report findings on (`assign`).",
    panel=TENANTS,
)
mount_group(
    app,
    risk.reviewers_app,
    "reviewers",
    help="The agency's reviewers: the registry, their keys and a key pair (`keygen`); "
    "registering one also gives it its Kafka principal and answers feed.",
    panel=TENANTS,
)


class TenantRole(StrEnum):
    LAB = "lab"
    EVALUATOR = "evaluator"
    GOVERNMENT = "government"
    REVIEWER = "reviewer"


principals_app = typer.Typer(
    no_args_is_help=True,
    help="Tenants' Kafka principals (credential, ACLs, feeds), as the operator: government "
    "subscribers, re-issuing a lost credential. (Registering a lab, evaluator or reviewer "
    "provisions its own.)",
)
mount_group(
    app,
    principals_app,
    "principals",
    help=principals_app.info.help or "",
    panel=TENANTS,
)


def _as_operator(*argv: str) -> None:
    """``python -m services.runtime.principals <argv>`` with the operator's credentials."""
    operator = os.environ.get("FR_KAFKA_OPERATOR_CREDENTIALS_FILE")
    if operator:
        os.environ["FR_KAFKA_CREDENTIALS_FILE"] = operator
    try:
        code = principals.main(["frontier-review principals", *argv])
    except Exception as exc:  # a refused or unreachable broker: one line, not a traceback
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@principals_app.command("add")
def principals_add(
    role: Annotated[TenantRole, typer.Argument(help="What the tenant is.")],
    tenant: Annotated[str, typer.Argument(help="Its id (a slug: a-z, 0-9, '-').")],
    out: Annotated[
        Path, typer.Option("--out", help="Its credentials file (written 0600; kept if present).")
    ],
) -> None:
    """Provision a tenant: its feeds (if its role has any), its ACLs, then its credential."""
    _as_operator("add", role.value, tenant, "--out", str(out))


@principals_app.command("remove")
def principals_remove(
    role: Annotated[TenantRole, typer.Argument(help="What the tenant is.")],
    tenant: Annotated[str, typer.Argument(help="Its id.")],
    delete_feeds: Annotated[
        bool, typer.Option("--delete-feeds", help="Delete its feed topics too (default: keep).")
    ] = False,
) -> None:
    """Revoke a tenant: its credential (no new connection), then its ACLs."""
    _as_operator("remove", role.value, tenant, *(["--delete-feeds"] if delete_feeds else []))


@principals_app.command("list")
def principals_list() -> None:
    """Every SCRAM user on the broker, with the role its name says."""
    _as_operator("list")


@principals_app.command("bootstrap")
def principals_bootstrap(
    directory: Annotated[Path, typer.Option("--dir", help="Where the credentials files live.")],
) -> None:
    """The deployment's own principals (the services, the test harness) and every ACL."""
    _as_operator("bootstrap", "--dir", str(directory))


# --- a submission's review ---------------------------------------------------------------

submission_app = typer.Typer(
    no_args_is_help=True, help="A submission as intake sees it, and refused input."
)
mount_command(submission_app, intake.app, "status")
mount_command(submission_app, intake.app, "refusals")
mount_group(app, submission_app, "submission", help=submission_app.info.help or "", panel=REVIEW)
mount_group(
    app,
    evaluation.evaluations_app,
    "evaluations",
    help="Evaluations of accepted submissions and their progress.",
    panel=REVIEW,
)
mount_group(
    app,
    evaluation.jobs_app,
    "jobs",
    help="The evaluation job queue: each suite run, its attempts and lease.",
    panel=REVIEW,
)
mount_group(
    app,
    evaluation.findings_app,
    "findings",
    help="Findings: the automated ones, and submitting a signed manual one (`submit`).",
    panel=REVIEW,
)
mount_group(
    app,
    evaluation.evidence_app,
    "evidence",
    help="The evidence behind findings (Inspect logs) and its integrity.",
    panel=REVIEW,
)
mount_group(
    app,
    risk.policies_app,
    "policies",
    help="Thresholds policy versions (how findings become risk levels) and their use.",
    panel=REVIEW,
)
mount_group(
    app,
    risk.escalations_app,
    "escalations",
    help="Escalations awaiting the reviewers, with quorum progress.",
    panel=REVIEW,
)
mount_command(app, risk.app, "decide", panel=REVIEW)
mount_command(app, access.app, "preview", panel=REVIEW)

access_app = typer.Typer(
    no_args_is_help=True,
    help="Restricted models, their Cedar policy versions and compliance; compiling orders; "
    "the lab keys acknowledgements are verified with (a copy of intake's registry).",
)
mount_command(access_app, access.app, "models")
mount_command(access_app, access.app, "policy")
mount_command(access_app, access.app, "compile")
mount_group(
    access_app,
    access.labs_app,
    "labs",
    help="Labs' keys as access holds them to verify compliance acknowledgements: a copy of "
    "intake's registry, received on intake.registry (read only; change them with `labs`).",
)
mount_group(app, access_app, "access", help=access_app.info.help or "", panel=REVIEW)

# --- audit and government systems ----------------------------------------------------------

mount_group(
    app,
    risk.audit_app,
    "audit",
    help="The risk service's hash-chained, signed audit log: verify it, checkpoint it, its key.",
    panel=EVIDENCE,
)
mount_group(
    app,
    risk.stix_app,
    "stix",
    help="A submission's findings and assessment as STIX 2.1, for government systems.",
    panel=EVIDENCE,
)

# --- operations ------------------------------------------------------------------------------

outbox_app = typer.Typer(
    no_args_is_help=True,
    help="Outbox rows the relay parked (their tenant feed did not exist), and requeuing them.",
)
mount_group(app, outbox_app, "outbox", help=outbox_app.info.help or "", panel=OPERATIONS)
SCHEMA_HELP = "The service's database schema: intake, evaluation, risk or access."


@outbox_app.command("parked")
def outbox_parked(
    schema: Annotated[str, typer.Option(help=SCHEMA_HELP)],
) -> None:
    """Parked rows per topic (topic, rows, reason)."""
    raise typer.Exit(outbox.main(["parked", "--schema", schema]))


@outbox_app.command("requeue")
def outbox_requeue(
    schema: Annotated[str, typer.Option(help=SCHEMA_HELP)],
    topic: Annotated[str | None, typer.Option(help="Only this topic's rows.")] = None,
) -> None:
    """Move parked rows back into the outbox (once their feed exists); the relay sends them."""
    raise typer.Exit(
        outbox.main(["requeue", "--schema", schema, *(["--topic", topic] if topic else [])])
    )


for command in console.app.registered_commands:  # status, traces
    mounted = copy.copy(command)
    mounted.rich_help_panel = OPERATIONS
    app.registered_commands.append(mounted)

if __name__ == "__main__":
    app(prog_name="frontier-review")
