"""Each agency service can do what its role needs with its own principal, nothing
more, and a missing ACL is a startup error naming the operation and the resource.

Most tests run on a rig: the registry's topics under a unique prefix and the
four service principals under a unique user prefix, with the registry's ACL set
applied to them (the same bindings the deployment gets, prefixed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts import encode, make_event
from contracts.acl import Grant, Operation, PatternType, ResourceType
from contracts.events.intake import LabRegistryChanged
from contracts.principals import AGENCY_SERVICES, Principal, Role
from contracts.registry import OUTBOX_CHECKPOINT_TOPIC, TOPICS, relay_transactional_id, subject_for
from services.runtime.acls import MissingAccess, add_grants, check_access, remove_grants
from services.runtime.kafka import aiokafka_options
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.topics import TopicPlan, ensure_topics
from tests.contracts.examples import example
from tests.security.support import (
    Rig,
    Stack,
    end_offsets,
    fetch_error,
    group_error,
    produce_error,
    rig,
    wait_for_topic,
)

DENIED = "TopicAuthorizationFailedError"
SERVICES = [pytest.param(role, id=str(role)) for role in AGENCY_SERVICES]


@pytest.fixture(scope="module")
async def services(stack: Stack) -> AsyncIterator[Rig]:
    async with rig(stack, [Principal(role) for role in AGENCY_SERVICES]) as built:
        yield built


def pairs(*, writes: bool, allowed: bool) -> list[object]:
    out: list[object] = []
    for role in AGENCY_SERVICES:
        for topic in TOPICS:
            granted = role in (topic.writers if writes else topic.readers)
            if granted == allowed:
                out.append(pytest.param(role, topic.name, id=f"{role}-{topic.name}"))
    return out


@pytest.mark.parametrize("role", SERVICES)
async def test_a_service_principal_passes_the_startup_check_for_its_role(
    services: Rig, role: Role
) -> None:
    await check_access(services.settings(Principal(role)), role, services.scope)


@pytest.mark.parametrize("role", SERVICES)
async def test_a_service_principal_fails_the_startup_check_for_another_role(
    services: Rig, role: Role
) -> None:
    other = AGENCY_SERVICES[(AGENCY_SERVICES.index(role) + 1) % len(AGENCY_SERVICES)]
    with pytest.raises(MissingAccess):
        await check_access(services.settings(Principal(role)), other, services.scope)


@pytest.mark.parametrize("role", SERVICES)
async def test_a_services_relay_publishes_a_transaction_with_its_checkpoint(
    services: Rig, role: Role
) -> None:
    relay = services.prefix + relay_transactional_id("frontier_review", role.value)
    producer = AIOKafkaProducer(
        **aiokafka_options(services.settings(Principal(role))), transactional_id=relay
    )
    await producer.start()
    try:
        async with producer.transaction():
            for topic in TOPICS:
                if role in topic.writers:
                    await producer.send(services.topic(topic.name), b"{}", key=b"k")
            checkpoint = TopicPartition(services.topic(OUTBOX_CHECKPOINT_TOPIC), 0)
            await producer.send_offsets_to_transaction({checkpoint: 1}, relay)
    finally:
        await producer.stop()


@pytest.mark.parametrize(("role", "topic"), pairs(writes=False, allowed=True))
async def test_a_service_consumes_what_it_reads_in_its_group_and_dead_letters_it(
    services: Rig, role: Role, topic: str
) -> None:
    settings = services.settings(Principal(role))
    group = services.prefix + f"{role}.{topic}"
    assert await group_error(settings, services.topic(topic), group) is None
    assert await produce_error(settings, services.topic(f"{topic}.dlq")) is None


@pytest.mark.parametrize(("role", "topic"), pairs(writes=True, allowed=False))
async def test_a_service_cannot_write_a_topic_it_does_not_own(
    services: Rig, role: Role, topic: str
) -> None:
    assert await produce_error(services.settings(Principal(role)), services.topic(topic)) == DENIED


@pytest.mark.parametrize(("role", "topic"), pairs(writes=False, allowed=False))
async def test_a_service_cannot_read_a_topic_it_does_not_consume(
    services: Rig, role: Role, topic: str
) -> None:
    assert await fetch_error(services.settings(Principal(role)), services.topic(topic)) == DENIED


async def test_a_missing_write_acl_is_a_startup_error_naming_topic_and_operation(
    services: Rig,
) -> None:
    intake = Principal(Role.INTAKE)
    grant = Grant(
        services.scope.user(intake),
        ResourceType.TOPIC,
        services.topic("intake.events"),
        PatternType.LITERAL,
        Operation.WRITE,
    )
    async with KafkaAdmin(services.stack.operator) as admin:
        await remove_grants(admin, frozenset({grant}))
        try:
            with pytest.raises(MissingAccess) as missing:
                await check_access(services.settings(intake), Role.INTAKE, services.scope)
        finally:
            await add_grants(admin, frozenset({grant}))
    assert missing.value.missing == [f"WRITE on topic '{services.topic('intake.events')}'"]


async def test_a_missing_transactional_id_acl_names_the_relays_transactional_id(
    services: Rig,
) -> None:
    risk = Principal(Role.RISK)
    relay = services.prefix + relay_transactional_id("frontier_review", "risk")
    grant = Grant(
        services.scope.user(risk),
        ResourceType.TRANSACTIONAL_ID,
        relay,
        PatternType.LITERAL,
        Operation.WRITE,
    )
    async with KafkaAdmin(services.stack.operator) as admin:
        await remove_grants(admin, frozenset({grant}))
        try:
            with pytest.raises(MissingAccess) as missing:
                await check_access(services.settings(risk), Role.RISK, services.scope)
        finally:
            await add_grants(admin, frozenset({grant}))
    assert missing.value.missing == [f"WRITE on transactional id '{relay}'"]
    assert "python -m services.runtime.topics apply-acls" in str(missing.value)


async def test_a_missing_topic_is_named_by_the_startup_check(services: Rig) -> None:
    dlq = services.topic("lab.submissions.dlq")
    async with KafkaAdmin(services.stack.operator) as admin:
        await admin.client.delete_topics([dlq])
        await wait_for_topic(services.stack.operator, dlq, exists=False)
        try:
            with pytest.raises(MissingAccess) as missing:
                await check_access(
                    services.settings(Principal(Role.INTAKE)), Role.INTAKE, services.scope
                )
        finally:
            await ensure_topics(services.stack.operator, [TopicPlan(dlq, 1)])
            await wait_for_topic(services.stack.operator, dlq, exists=True)
    assert missing.value.missing == [f"topic '{dlq}' does not exist"]


@pytest.mark.parametrize("role", [*SERVICES, pytest.param(Role.TEST, id="test")])
async def test_the_deployments_own_principals_pass_the_startup_check(
    stack: Stack, role: Role
) -> None:
    await check_access(stack.settings_for(role.value), role)


async def test_a_forged_lab_registry_entry_is_refused_by_the_broker(stack: Stack) -> None:
    """Access verifies the labs' acknowledgements with the keys it reads on
    intake.registry, so whoever could write it could authenticate as any lab: a lab
    adding a key of its choosing, or access, its one reader. Only intake may; every
    other principal's record is refused before any consumer sees it."""
    intake = Principal(Role.INTAKE)
    forgers = [Principal(Role.LAB, "forger"), *(Principal(r) for r in AGENCY_SERVICES)]
    forgers.remove(intake)
    async with rig(stack, [intake, *forgers]) as built:
        entry = example(LabRegistryChanged)
        event = make_event(entry, source="/frontier-review/intake", subject=subject_for(entry))
        topic = built.topic("intake.registry")
        before = await end_offsets(stack.operator, topic)
        for forger in forgers:
            refused = await produce_error(
                built.settings(forger), topic, encode(event), key=event.subject.encode()
            )
            assert refused == DENIED, forger
        assert await end_offsets(stack.operator, topic) == before
        written = await produce_error(
            built.settings(intake), topic, encode(event), key=event.subject.encode()
        )
        assert written is None
