"""Apply the registry's ACLs to the broker, read them back, and check a principal's access.

``apply_acls`` converges: for the principals it manages it creates the bindings
``contracts.acl`` derives and deletes any others they hold (within the scope's
name prefix), so a permission dropped from the registry is revoked, not left
behind. Which principals exist is the broker's list of SCRAM users: the four
services, the console, the test harness, and every provisioned tenant (``lab.<id>``, ...).
Principals that are none of ours (the broker, a test rig's own users) are left
alone.

``check_access(settings, role)`` is for a process at start: it asks the
broker which operations its principal may perform on every resource the
registry says the role needs, and raises ``MissingAccess`` naming each missing
(operation, resource) — a clear startup error instead of an authorization
failure deep in a consumer loop.

    python -m services.runtime.topics apply-acls [--prefix P] [--principal-prefix Q]
    python -m services.runtime.topics acls        # read back; exit 1 if not as registered
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from contracts.acl import AclScope, Grant, Operation, PatternType, ResourceType, desired_grants
from contracts.acl import own_grants as registry_own_grants
from contracts.principals import (
    AGENCY_SERVICES,
    READ_MODELS,
    Principal,
    Role,
    parse_principal,
)
from contracts.registry import feeds_of
from services.runtime.kafka import KafkaSettings, principal_name
from services.runtime.kafka_admin import KafkaAdmin

FIXED_PRINCIPALS: tuple[Principal, ...] = (
    *(Principal(role) for role in AGENCY_SERVICES),
    *(Principal(role) for role in READ_MODELS),
    Principal(Role.TEST),
)
"""The principals every deployment has (besides the super users)."""

PROPAGATION_TIMEOUT_S = 15.0


class MissingAccess(RuntimeError):
    """A principal lacks operations its role needs; the message lists each one."""

    def __init__(self, principal: str, role: str, missing: list[str]) -> None:
        self.principal = principal
        self.missing = missing
        super().__init__(
            f"Kafka principal {principal!r} (role {role}) lacks what the registry grants its "
            f"role: {'; '.join(missing)}. Apply the ACLs: python -m services.runtime.topics "
            "apply-acls (as the operator)"
        )


@dataclass(frozen=True)
class AclChanges:
    created: frozenset[Grant]
    deleted: frozenset[Grant]


def _managed(user: str, scope: AclScope) -> bool:
    name = user.removeprefix("User:")
    if not user.startswith("User:") or not name.startswith(scope.principal_prefix):
        return False
    return parse_principal(name.removeprefix(scope.principal_prefix)) is not None


def _in_scope(grant: Grant, scope: AclScope) -> bool:
    return grant.name.startswith(scope.prefix) and _managed(grant.principal, scope)


async def deployment_principals(
    admin: KafkaAdmin, scope: AclScope | None = None
) -> list[Principal]:
    """The fixed principals and every tenant with a SCRAM credential, in ``scope``."""
    scope = scope or AclScope()
    found = set(FIXED_PRINCIPALS)
    for user in await admin.scram_users():
        if user.startswith(scope.principal_prefix):
            principal = parse_principal(user.removeprefix(scope.principal_prefix))
            if principal is not None:
                found.add(principal)
    return sorted(found)


async def read_acls(admin: KafkaAdmin, scope: AclScope | None = None) -> frozenset[Grant]:
    """The bindings the broker holds for our principals, within ``scope``."""
    scope = scope or AclScope()
    return frozenset(g for g in await admin.describe_acls() if _in_scope(g, scope))


async def apply_acls(
    admin: KafkaAdmin,
    principals: Iterable[Principal] | None = None,
    scope: AclScope | None = None,
) -> AclChanges:
    """Make the broker hold exactly the registry's bindings for ``principals``
    (default: ``deployment_principals``) within ``scope``; idempotent."""
    scope = scope or AclScope()
    chosen = (
        list(principals) if principals is not None else await deployment_principals(admin, scope)
    )
    desired = desired_grants(chosen, scope)
    users = {scope.user(p) for p in chosen}
    present = {g for g in await read_acls(admin, scope) if g.principal in users}
    changes = AclChanges(frozenset(desired - present), frozenset(present - desired))
    await admin.create_acls(changes.created)
    await admin.delete_acls(changes.deleted)
    await wait_for_acls(admin, lambda held: desired <= held and not (held & changes.deleted))
    return changes


async def add_grants(admin: KafkaAdmin, grants: frozenset[Grant]) -> None:
    await admin.create_acls(grants)
    await wait_for_acls(admin, lambda held: grants <= held)


async def remove_grants(admin: KafkaAdmin, grants: frozenset[Grant]) -> None:
    await admin.delete_acls(grants)
    await wait_for_acls(admin, lambda held: not (held & grants))


async def wait_for_acls(admin: KafkaAdmin, done: Callable[[frozenset[Grant]], bool]) -> None:
    """ACL changes go through the metadata log; DescribeAcls answers from the
    broker's authorizer, so once it shows them they are in force."""
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
    while not done(await admin.describe_acls()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ACL changes not visible after {PROPAGATION_TIMEOUT_S:g} s")
        await asyncio.sleep(0.05)


def _probe_name(grant: Grant) -> str:
    """A concrete name inside a PREFIXED grant to ask about."""
    if grant.pattern is PatternType.LITERAL:
        return grant.name
    return f"{grant.name}access-check"


async def check_access(
    settings: KafkaSettings, who: Role | Principal, scope: AclScope | None = None
) -> None:
    """Raise MissingAccess unless ``settings``' principal may do everything the
    registry grants ``who`` (a role with one principal, or a tenant's principal).

    Topics are probed by name (a lab's PREFIXED feed grant by each of its feed
    topics), consumer groups with DescribeGroups, transactional ids with a
    no-op AddOffsetsToTxn; none of it changes anything on the broker. A topic
    that does not exist is reported as missing too.
    """
    scope = scope or AclScope()
    principal = who if isinstance(who, Principal) else Principal(who)
    needed = registry_own_grants(principal, scope)
    async with KafkaAdmin(settings) as admin:
        missing = await _missing_on_topics(admin, principal, needed, scope)
        missing += await _missing_on_groups_and_transactions(admin, needed)
    if missing:
        raise MissingAccess(principal_name(settings) or "ANONYMOUS", str(principal.role), missing)


async def _missing_on_topics(
    admin: KafkaAdmin, principal: Principal, needed: frozenset[Grant], scope: AclScope
) -> list[str]:
    wanted: dict[str, set[Operation]] = {}
    samples: set[str] = set()  # names made up inside a PREFIXED grant
    for grant in needed:
        if grant.resource_type is not ResourceType.TOPIC:
            continue
        names = [grant.name]
        if grant.pattern is PatternType.PREFIXED and feeds_of(principal.role):
            assert principal.tenant is not None
            names = [
                scope.prefix + feed.topic(principal.tenant) for feed in feeds_of(principal.role)
            ]
        elif grant.pattern is PatternType.PREFIXED:
            names = [_probe_name(grant)]
            samples.update(names)
        for name in names:
            wanted.setdefault(name, set()).add(grant.operation)
    access = await admin.topic_access(wanted) if wanted else {}
    missing: list[str] = []
    for name, operations in sorted(wanted.items()):
        held = access.get(name)
        if held is not None and held.error == "UnknownTopicOrPartitionError":
            if name not in samples:  # the broker says "unknown" only to who may describe it
                missing.append(f"topic {name!r} does not exist")
            continue
        missing += [
            f"{operation} on topic {name!r}"
            for operation in sorted(operations)
            if held is None or not _allows(held.operations, operation)
        ]
    return missing


async def _missing_on_groups_and_transactions(
    admin: KafkaAdmin, needed: frozenset[Grant]
) -> list[str]:
    transactional = {g.name for g in needed if g.resource_type is ResourceType.TRANSACTIONAL_ID}
    missing: list[str] = []
    for grant in sorted(needed):
        name = _probe_name(grant)
        if grant.resource_type is ResourceType.GROUP and grant.name not in transactional:
            if not _allows((await admin.group_access(name)).operations, grant.operation):
                missing.append(f"{grant.operation} on group {name!r}")
        elif grant.resource_type is ResourceType.TRANSACTIONAL_ID:
            # A relay's transaction needs WRITE on its id and READ on its checkpoint group.
            error = await admin.transactional_write_error(name, name)
            if error == "TransactionalIdAuthorizationFailed":
                missing.append(f"{grant.operation} on transactional id {name!r}")
            elif error is not None:
                missing.append(f"READ on group {name!r} (its relay's checkpoint group)")
    return missing


def _allows(held: frozenset[Operation], needed: Operation) -> bool:
    if needed is Operation.ALL:
        return Operation.ALL in held or {Operation.READ, Operation.WRITE} <= held
    return needed in held or Operation.ALL in held
