"""A lab writes its signed input and reads its own feeds; every other byte is refused
by the broker, on the deployment's real topics."""

from __future__ import annotations

import pytest

from contracts import encode, make_event
from contracts.events import SubmissionAccepted
from contracts.principals import Principal, Role
from contracts.registry import TOPICS, subject_for
from services.runtime.acls import MissingAccess, check_access
from services.runtime.kafka_admin import KafkaAdmin
from tests.contracts.examples import example
from tests.security.support import (
    NewLab,
    Stack,
    end_offsets,
    fetch_error,
    group_error,
    produce,
    produce_error,
    read,
)

NOT_FOR_LABS_TO_READ = [t.name for t in TOPICS if Role.LAB not in t.readers]
NOT_FOR_LABS_TO_WRITE = [t.name for t in TOPICS if Role.LAB not in t.writers]
DENIED = "TopicAuthorizationFailedError"


@pytest.mark.parametrize("topic", NOT_FOR_LABS_TO_READ)
async def test_a_lab_cannot_read_an_agency_topic(stack: Stack, new_lab: NewLab, topic: str) -> None:
    lab = stack.settings((await new_lab()).file)
    assert await fetch_error(lab, topic) == DENIED


@pytest.mark.parametrize("topic", NOT_FOR_LABS_TO_WRITE)
async def test_a_lab_cannot_write_an_agency_topic(
    stack: Stack, new_lab: NewLab, topic: str
) -> None:
    lab = stack.settings((await new_lab()).file)
    assert await produce_error(lab, topic) == DENIED


async def test_a_lab_cannot_read_back_the_submissions_it_writes(
    stack: Stack, new_lab: NewLab
) -> None:
    lab = stack.settings((await new_lab()).file)
    assert await produce_error(lab, "lab.submissions") is None
    assert await fetch_error(lab, "lab.submissions") == DENIED


async def test_a_forged_submission_accepted_from_a_lab_never_reaches_intake_events(
    stack: Stack, new_lab: NewLab
) -> None:
    # The attack: accept a submission of another lab, with that lab's credential
    # ref and an endpoint of the attacker's, straight onto intake.events.
    attacker = stack.settings((await new_lab()).file)
    forged = example(SubmissionAccepted)
    event = make_event(forged, source="/frontier-review/intake", subject=subject_for(forged))
    before = await end_offsets(stack.operator, "intake.events")
    refused = await produce_error(
        attacker, "intake.events", encode(event), key=event.subject.encode()
    )
    assert refused == DENIED
    assert await end_offsets(stack.operator, "intake.events") == before


async def test_a_lab_cannot_read_another_labs_feed(stack: Stack, new_lab: NewLab) -> None:
    mine, theirs = await new_lab(), await new_lab()
    for feed in theirs.feeds.values():
        assert await fetch_error(stack.settings(mine.file), feed) == DENIED


async def test_a_lab_reads_its_own_feed_in_a_group_of_its_namespace(
    stack: Stack, new_lab: NewLab
) -> None:
    registered = await new_lab()
    answers = registered.feeds["answers"]
    await produce(stack.settings_for("intake"), answers, (b"s1", b'{"answer": 1}'))
    records = await read(
        stack.settings(registered.file),
        answers,
        expected=1,
        group=f"{registered.group_prefix}follow",
    )
    assert [r.value for r in records] == [b'{"answer": 1}']


async def test_a_lab_cannot_use_a_consumer_group_outside_its_namespace(
    stack: Stack, new_lab: NewLab
) -> None:
    mine, theirs = await new_lab(), await new_lab()
    lab = stack.settings(mine.file)
    assert await group_error(lab, mine.feeds["answers"], "intake.lab.submissions") == (
        "GroupAuthorizationFailedError"
    )
    assert await group_error(lab, mine.feeds["answers"], f"{theirs.group_prefix}x") == (
        "GroupAuthorizationFailedError"
    )


async def test_a_lab_sees_only_its_own_topics_in_the_cluster_metadata(
    stack: Stack, new_lab: NewLab
) -> None:
    mine, _theirs = await new_lab(), await new_lab()
    async with KafkaAdmin(stack.settings(mine.file)) as admin:
        visible = set(await admin.client.list_topics())
    assert visible == {"lab.submissions", "lab.compliance", *mine.feeds.values()}


async def test_only_access_may_write_a_labs_policy_feed(stack: Stack, new_lab: NewLab) -> None:
    registered = await new_lab()
    policies = registered.feeds["policies"]
    assert await produce_error(stack.settings_for("access"), policies) is None
    for other in ("intake", "evaluation", "risk"):
        assert await produce_error(stack.settings_for(other), policies) == DENIED
    assert await produce_error(stack.settings(registered.file), policies) == DENIED


async def test_a_registered_lab_passes_the_startup_check_for_its_principal(
    stack: Stack, new_lab: NewLab
) -> None:
    registered = await new_lab()
    await check_access(stack.settings(registered.file), Principal(Role.LAB, registered.lab_id))


async def test_a_lab_is_not_another_lab_for_the_startup_check(
    stack: Stack, new_lab: NewLab
) -> None:
    mine, theirs = await new_lab(), await new_lab()
    with pytest.raises(MissingAccess) as missing:
        await check_access(stack.settings(mine.file), Principal(Role.LAB, theirs.lab_id))
    assert f"READ on topic '{theirs.feeds['answers']}'" in missing.value.missing
