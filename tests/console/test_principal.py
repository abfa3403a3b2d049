"""The console's own principal on the secured broker: it reads what the console needs,
in its own consumer groups, and can write nothing — no topic, no dead letter, no
transaction, no topic administration, no other reader's offsets.

The shared deployment's ACLs are not touched: a rig (tests/security/support.py) puts
the registry's topics under a prefix of its own and a console principal under a user
prefix of its own, with the registry's ACL set for that principal applied to them.
The console service then runs as that principal, fed by the test principal as the
agency's services would feed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.principals import AGENCY_SERVICES, Principal, Role
from contracts.registry import (
    DEAD_LETTER_TOPICS,
    TOPICS,
    consumer_group,
    relay_transactional_id,
)
from services.console.app import build_service
from services.console.settings import ConsoleSettings
from services.runtime import RuntimeSettings
from services.runtime.acls import MissingAccess, check_access
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from services.runtime.kafka import aiokafka_options
from tests.console.rig import Rig, console_settings, token_of
from tests.console.scenario import Scenario
from tests.kit import Producer, drop_schema
from tests.security import support
from tests.security.support import Stack, fetch_error, group_error, produce_error

CONSOLE = Principal(Role.CONSOLE)
DENIED = "TopicAuthorizationFailedError"
READ = sorted(t.name for t in (*TOPICS, *DEAD_LETTER_TOPICS) if Role.CONSOLE in t.readers)
NOT_READ = sorted(t.name for t in TOPICS if Role.CONSOLE not in t.readers)


@pytest.fixture(scope="module")
async def brokered(kafka: str) -> AsyncIterator[support.Rig]:
    """The registry's topics under a rig prefix, and a console principal with its ACLs."""
    async with support.rig(Stack.from_env(), [CONSOLE]) as built:
        yield built


def as_console(brokered: support.Rig, base: RuntimeSettings, directory: Path) -> ConsoleSettings:
    """Console settings on the rig's topics, connecting as the rig's console principal."""
    credentials = brokered.credentials[CONSOLE]
    return console_settings(
        base,
        directory,
        topic_prefix=brokered.prefix,
        kafka_credentials_file=None,
        kafka_username=credentials.username,
        kafka_password=credentials.password,
    )


@pytest.fixture(scope="module")
async def console(
    brokered: support.Rig,
    settings: RuntimeSettings,
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Rig]:
    """The console service running as its own principal; fed by the test principal."""
    mine = as_console(brokered, settings, tmp_path_factory.mktemp("console-principal"))
    feeder = settings.model_copy(update={"topic_prefix": brokered.prefix})
    service = build_service(mine)
    await service.start()  # its startup check of its ACLs passes, or this raises
    try:
        letters = AIOKafkaProducer(**feeder.kafka_options(), max_request_size=DLQ_MAX_MESSAGE_BYTES)
        await letters.start()
        try:
            async with Producer(feeder) as producer:
                yield Rig(mine, service, producer, letters, token_of(mine))
        finally:
            await letters.stop()
    finally:
        await service.stop()
        await drop_schema(mine)


async def test_the_console_principal_passes_the_startup_check_of_its_role(
    brokered: support.Rig,
) -> None:
    await check_access(brokered.settings(CONSOLE), Role.CONSOLE, brokered.scope)


async def test_the_console_principal_fails_the_startup_check_of_an_agency_service(
    brokered: support.Rig,
) -> None:
    for role in AGENCY_SERVICES:
        with pytest.raises(MissingAccess):
            await check_access(brokered.settings(CONSOLE), role, brokered.scope)


async def test_the_console_running_as_its_principal_projects_events_and_dead_letters(
    console: Rig,
) -> None:
    s = Scenario()
    await console.send(s.accepted())
    await console.send(s.started())
    await console.send_dead_letter(
        "lab.submissions", b"\x00 not json", key=str(s.submission_id), reason="malformed_json"
    )
    await console.until_row(
        "the acceptance, the plan and the dead letter",
        """SELECT EXISTS (SELECT 1 FROM intake_facts WHERE submission_id = $1)
              AND EXISTS (SELECT 1 FROM evaluation_facts WHERE submission_id = $1)
              AND EXISTS (SELECT 1 FROM dead_letters WHERE submission_id = $1)""",
        s.submission_id,
    )


async def test_the_console_principal_fetches_every_topic_it_reads(brokered: support.Rig) -> None:
    as_console = brokered.settings(CONSOLE)
    answers = await asyncio.gather(*(fetch_error(as_console, brokered.topic(t)) for t in READ))
    assert dict(zip(READ, answers, strict=True)) == dict.fromkeys(READ)


async def test_the_console_principal_fetches_no_topic_it_does_not_read(
    brokered: support.Rig,
) -> None:
    # Lab, evaluator and reviewer input before verification, the government feed, the
    # relays' checkpoints: none of it is the console's to see.
    as_console = brokered.settings(CONSOLE)
    answers = await asyncio.gather(*(fetch_error(as_console, brokered.topic(t)) for t in NOT_READ))
    assert dict(zip(NOT_READ, answers, strict=True)) == dict.fromkeys(NOT_READ, DENIED)


async def test_the_console_principal_writes_to_no_topic_not_even_a_dead_letter_queue(
    brokered: support.Rig,
) -> None:
    as_console = brokered.settings(CONSOLE)
    every = sorted(plan.name for plan in brokered.topic_plans())
    answers = await asyncio.gather(*(produce_error(as_console, topic) for topic in every))
    assert dict(zip(every, answers, strict=True)) == dict.fromkeys(every, DENIED)


async def test_the_console_principal_cannot_start_a_transaction(brokered: support.Rig) -> None:
    for transactional_id in [
        brokered.prefix + relay_transactional_id("frontier_review", "console"),
        brokered.prefix + relay_transactional_id("frontier_review", "risk"),
    ]:
        producer = AIOKafkaProducer(
            **aiokafka_options(brokered.settings(CONSOLE)), transactional_id=transactional_id
        )
        with pytest.raises(Exception) as refused:
            await asyncio.wait_for(producer.start(), 30)
        await producer.stop()
        assert type(refused.value).__name__ == "TransactionalIdAuthorizationFailed"


async def test_the_console_principal_cannot_create_or_delete_a_topic(
    brokered: support.Rig,
) -> None:
    made_up, read = brokered.topic("console.own"), brokered.topic("intake.events")
    admin = AIOKafkaAdminClient(**aiokafka_options(brokered.settings(CONSOLE)))
    await admin.start()
    try:
        made = await admin.create_topics([NewTopic(made_up, 1, 1)])
        deleted = await admin.delete_topics([read])
    finally:
        await admin.close()
    answers = [(t, errors.for_code(code).__name__) for t, code, *_ in made.topic_errors]
    answers += [(t, errors.for_code(code).__name__) for t, code in deleted.topic_error_codes]
    assert answers == [(made_up, DENIED), (read, DENIED)]
    operator = AIOKafkaAdminClient(**aiokafka_options(brokered.stack.operator))
    await operator.start()
    try:
        topics = set(await operator.list_topics())
    finally:
        await operator.close()
    assert made_up not in topics and read in topics


async def test_the_console_principal_cannot_join_another_readers_consumer_group(
    brokered: support.Rig,
) -> None:
    # A group's committed offsets are its readers' progress: moving risk's would make
    # risk skip or replay intake's events.
    topic = brokered.topic("intake.events")
    as_console = brokered.settings(CONSOLE)
    others = await group_error(
        as_console, topic, brokered.prefix + consumer_group(Role.RISK, "intake.events")
    )
    own = await group_error(
        as_console, topic, brokered.prefix + consumer_group(Role.CONSOLE, "intake.events")
    )
    assert (others, own) == ("GroupAuthorizationFailedError", None)
