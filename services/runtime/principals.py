"""Kafka principals: the deployment's own, and the tenants' (labs, evaluators,
government subscribers, reviewers), each a SCRAM credential plus the registry's ACLs.

Run as the operator (super user). Passwords are generated here (256 bits),
written once to a credentials file (mode 0600) for whoever holds the
principal, and sent to the broker only as a salted SCRAM credential.

- ``bootstrap(settings, directory)``: the four services, the console and the test harness
  get a credential each (``<directory>/<name>.json``, reused if present), then
  the whole ACL set is applied (deploy/stack.sh runs it on every ``up``).
- ``provision_lab(settings, lab_id, file)``: the lab's feed topics
  (``labs.<lab id>.answers``, ``labs.<lab id>.policies``), its ACLs and the
  agency's on those feeds, then its credential — last, so a lab can connect
  only once everything it may use exists. Idempotent: an existing credentials
  file keeps its password, a missing one means a new password (rotation).
- ``deprovision_lab(settings, lab_id)``: the credential first (no new
  connection), then the ACLs (an open connection can do nothing more); the
  feeds' records are kept unless ``delete_feeds``. Idempotent.

    python -m services.runtime.principals bootstrap --dir .local/kafka/principals
    python -m services.runtime.principals add lab acme --out acme-kafka.json
    python -m services.runtime.principals remove lab acme [--delete-feeds]
    python -m services.runtime.principals list
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from pydantic import SecretStr

from contracts.acl import AclScope, grants_for
from contracts.principals import Principal, Role, check_tenant_id, parse_principal
from contracts.registry import LAB_FEEDS, feeds_of
from services.runtime.acls import (
    FIXED_PRINCIPALS,
    PROPAGATION_TIMEOUT_S,
    AclChanges,
    add_grants,
    apply_acls,
    remove_grants,
)
from services.runtime.database import database_name
from services.runtime.kafka import (
    KafkaCredentials,
    KafkaSettings,
    aiokafka_options,
    read_credentials,
    write_credentials,
)
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import TopicPlan, ensure_topics


@dataclass(frozen=True)
class LabCredentials:
    """What a registered lab receives: its principal, password and names."""

    lab_id: str
    credentials: KafkaCredentials
    feeds: dict[str, str]  # feed suffix -> topic
    group_prefix: str
    file: Path

    def __repr__(self) -> str:
        return f"LabCredentials(lab_id={self.lab_id!r}, file={str(self.file)!r})"


def new_password() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


def _credentials(principal: Principal, file: Path, scope: AclScope) -> KafkaCredentials:
    user = scope.principal_prefix + principal.name
    if file.exists():
        existing = read_credentials(file)
        if existing.username != user:
            raise ValueError(f"{file} holds the credentials of {existing.username!r}, not {user!r}")
        return existing
    credentials = KafkaCredentials(user, new_password())
    extra = {"role": str(principal.role)} | (
        {"tenant": principal.tenant} if principal.tenant else {}
    )
    write_credentials(file, credentials, **extra)
    return credentials


async def _upsert(admin: KafkaAdmin, credentials: KafkaCredentials) -> None:
    await admin.upsert_scram_user(credentials.username, credentials.password.get_secret_value())
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
    while credentials.username not in await admin.scram_users():
        if time.monotonic() > deadline:
            raise TimeoutError(f"SCRAM credential of {credentials.username!r} not visible")
        await asyncio.sleep(0.05)


async def wait_until_authenticates(
    settings: KafkaSettings, credentials: KafkaCredentials, timeout_s: float = PROPAGATION_TIMEOUT_S
) -> None:
    """Until a new connection as ``credentials`` succeeds. The controller lists a
    credential as soon as it is committed; the broker's own credential cache
    follows the metadata log a moment later."""
    as_principal = settings.model_copy(
        update={
            "kafka_credentials_file": None,
            "kafka_username": credentials.username,
            "kafka_password": credentials.password,
        }
    )
    options = aiokafka_options(as_principal)
    host, port = options.pop("bootstrap_servers").split(",")[0].rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=5000, **options)
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{credentials.username!r} cannot authenticate yet") from None
            await asyncio.sleep(0.1)
            continue
        conn.close()
        return


async def ensure_principal(
    admin: KafkaAdmin, principal: Principal, file: Path, scope: AclScope | None = None
) -> KafkaCredentials:
    """The principal's SCRAM credential from ``file`` (made if missing), on the broker."""
    credentials = _credentials(principal, file, scope or AclScope())
    await _upsert(admin, credentials)
    return credentials


async def bootstrap(
    settings: KafkaSettings, directory: Path, scope: AclScope | None = None
) -> AclChanges:
    """Credentials for the services and the test harness, then every ACL."""
    scope = scope or AclScope()
    async with KafkaAdmin(settings) as admin:
        for principal in FIXED_PRINCIPALS:
            await ensure_principal(admin, principal, directory / f"{principal.name}.json", scope)
        return await apply_acls(admin, scope=scope)


def feed_plans(principal: Principal, scope: AclScope | None = None) -> list[TopicPlan]:
    """The feed topics a tenant owns (a lab's answers and policies, an evaluator's and a
    reviewer's answers; none for a government subscriber)."""
    prefix = (scope or AclScope()).prefix
    if principal.tenant is None:
        return []
    return [
        TopicPlan(prefix + feed.topic(principal.tenant), feed.partitions, feed.kafka_config())
        for feed in feeds_of(principal.role)
    ]


async def provision_tenant(
    settings: KafkaSettings, principal: Principal, file: Path, scope: AclScope | None = None
) -> KafkaCredentials:
    """A tenant's feed topics, its ACLs, then its credential."""
    scope = scope or AclScope()
    if plans := feed_plans(principal, scope):
        await ensure_topics(settings, plans)
    grants = grants_for(principal, scope)
    async with KafkaAdmin(settings) as admin:
        await add_grants(admin, grants)
        credentials = _credentials(principal, file, scope)
        await _upsert(admin, credentials)
        # A converging apply-acls that ran before the credential existed did not
        # count this tenant yet and may have revoked its grants: re-assert them.
        await add_grants(admin, grants)
    await wait_until_authenticates(settings, credentials)
    return credentials


async def deprovision_tenant(
    settings: KafkaSettings,
    principal: Principal,
    scope: AclScope | None = None,
    *,
    delete_feeds: bool = False,
) -> None:
    scope = scope or AclScope()
    async with KafkaAdmin(settings) as admin:
        # The credential's removal precedes the ACLs' in the metadata log, so once
        # the broker's authorizer shows the ACLs gone, its credential cache has
        # dropped the user too.
        await admin.delete_scram_user(scope.principal_prefix + principal.name)
        await remove_grants(admin, grants_for(principal, scope))
    topics = [plan.name for plan in feed_plans(principal, scope)]
    if delete_feeds and topics:
        client = AIOKafkaAdminClient(**aiokafka_options(settings))
        await client.start()
        try:
            existing = set(await client.list_topics())
            if present := [t for t in topics if t in existing]:
                await client.delete_topics(present)
        finally:
            await client.close()


async def provision_lab(
    settings: KafkaSettings, lab_id: str, file: Path, scope: AclScope | None = None
) -> LabCredentials:
    """Register lab ``lab_id`` on Kafka: feeds, ACLs, then its credential in ``file``."""
    scope = scope or AclScope()
    principal = Principal(Role.LAB, check_tenant_id(lab_id))
    credentials = await provision_tenant(settings, principal, file, scope)
    namespace = principal.namespace()
    assert namespace is not None
    return LabCredentials(
        lab_id=lab_id,
        credentials=credentials,
        feeds={feed.suffix: scope.prefix + feed.topic(lab_id) for feed in LAB_FEEDS},
        group_prefix=scope.prefix + namespace,
        file=file,
    )


async def deprovision_lab(
    settings: KafkaSettings,
    lab_id: str,
    scope: AclScope | None = None,
    *,
    delete_feeds: bool = False,
) -> None:
    """Revoke lab ``lab_id``: it can no longer connect, nor do anything on a live connection."""
    principal = Principal(Role.LAB, check_tenant_id(lab_id))
    await deprovision_tenant(settings, principal, scope, delete_feeds=delete_feeds)


async def _list(settings: KafkaSettings) -> int:
    async with KafkaAdmin(settings) as admin:
        users = sorted(await admin.scram_users())
    for user in users:
        principal = parse_principal(user)
        kind = "unmanaged" if principal is None else str(principal.role)
        print(f"{user:40} {kind}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.principals")
    commands = parser.add_subparsers(dest="command", required=True)
    boot = commands.add_parser("bootstrap", help="the deployment's principals and all ACLs")
    boot.add_argument("--dir", type=Path, required=True, help="where credentials files live")
    add = commands.add_parser("add", help="provision a tenant (lab, evaluator, ...)")
    add.add_argument("role", choices=["lab", "evaluator", "government", "reviewer"])
    add.add_argument("tenant")
    add.add_argument("--out", type=Path, required=True, help="its credentials file (0600)")
    remove = commands.add_parser("remove", help="revoke a tenant")
    remove.add_argument("role", choices=["lab", "evaluator", "government", "reviewer"])
    remove.add_argument("tenant")
    remove.add_argument("--delete-feeds", action="store_true")
    commands.add_parser("list", help="every SCRAM user")
    args = parser.parse_args(argv[1:])
    settings = KafkaSettings()
    scope = AclScope(database=database_name(RuntimeSettings().database_url))
    if args.command == "bootstrap":
        changes = asyncio.run(bootstrap(settings, args.dir, scope))
        print(
            f"principals: {len(FIXED_PRINCIPALS)} ensured; acls: {len(changes.created)} "
            f"granted, {len(changes.deleted)} revoked",
            file=sys.stderr,
        )
        return 0
    if args.command == "list":
        return asyncio.run(_list(settings))
    principal = Principal(Role(args.role), check_tenant_id(args.tenant))
    if args.command == "add":
        asyncio.run(provision_tenant(settings, principal, args.out, scope))
        print(f"provisioned {principal.name}; credentials in {args.out}", file=sys.stderr)
    else:
        asyncio.run(deprovision_tenant(settings, principal, scope, delete_feeds=args.delete_feeds))
        print(f"revoked {principal.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
