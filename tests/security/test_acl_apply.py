"""The broker holds exactly the registry's ACLs: applied idempotently, converging,
and read back equal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.acl import Grant, Operation, PatternType, ResourceType, desired_grants
from contracts.principals import AGENCY_SERVICES, Principal, Role
from services.runtime.acls import apply_acls, deployment_principals, read_acls
from services.runtime.kafka_admin import KafkaAdmin
from tests.security.support import NewLab, Rig, Stack, rig


@pytest.fixture(scope="module")
async def services(stack: Stack) -> AsyncIterator[Rig]:
    async with rig(stack, [Principal(role) for role in AGENCY_SERVICES]) as built:
        yield built


async def test_the_deployments_acls_read_back_equal_the_registrys(
    stack: Stack, new_lab: NewLab
) -> None:
    await new_lab()  # a tenant too, so its grants and the agency's on its feeds count
    async with KafkaAdmin(stack.operator) as admin:
        principals = await deployment_principals(admin)
        held = await read_acls(admin)
    assert held == desired_grants(principals)


async def test_applying_the_acls_again_changes_nothing(stack: Stack) -> None:
    async with KafkaAdmin(stack.operator) as admin:
        await apply_acls(admin)
        again = await apply_acls(admin)
    assert (again.created, again.deleted) == (frozenset(), frozenset())


async def test_a_rigs_acls_read_back_equal_the_registrys_prefixed_set(services: Rig) -> None:
    async with KafkaAdmin(services.stack.operator) as admin:
        held = await read_acls(admin, services.scope)
    assert held == desired_grants(services.credentials, services.scope)


async def test_applying_revokes_a_binding_the_registry_does_not_grant(services: Rig) -> None:
    extra = Grant(
        services.scope.user(Principal(Role.INTAKE)),
        ResourceType.TOPIC,
        services.topic("risk.events"),
        PatternType.LITERAL,
        Operation.READ,
    )
    async with KafkaAdmin(services.stack.operator) as admin:
        await admin.create_acls([extra])
        changes = await apply_acls(admin, services.credentials, services.scope)
        held = await read_acls(admin, services.scope)
    assert changes.deleted == {extra} and not changes.created
    assert extra not in held


async def test_applying_restores_a_missing_binding(services: Rig) -> None:
    missing = next(iter(sorted(desired_grants(services.credentials, services.scope))))
    async with KafkaAdmin(services.stack.operator) as admin:
        await admin.delete_acls([missing])
        changes = await apply_acls(admin, services.credentials, services.scope)
        held = await read_acls(admin, services.scope)
    assert changes.created == {missing} and not changes.deleted
    assert missing in held


async def test_applying_the_deployments_acls_leaves_other_principals_alone(
    services: Rig,
) -> None:
    async with KafkaAdmin(services.stack.operator) as admin:
        before = await read_acls(admin, services.scope)
        await apply_acls(admin)
        after = await read_acls(admin, services.scope)
    assert after == before != frozenset()
