"""Kafka's PREFIXED ACLs match by plain string prefix: lab ids chosen to make one
lab's grant cover another's names, or an agency topic, get nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.principals import InvalidTenantId
from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.principals import provision_lab
from tests.security.support import NewLab, Stack, fetch_error, group_error, unique

DENIED = "TopicAuthorizationFailedError"


async def test_a_lab_cannot_read_the_feeds_of_a_lab_whose_id_extends_its_own(
    stack: Stack, new_lab: NewLab
) -> None:
    short = unique("t")
    mine = await new_lab(short)
    longer = await new_lab(f"{short}-x")  # labs.<short>-x. starts with "labs.<short>"
    for feed in longer.feeds.values():
        assert await fetch_error(stack.settings(mine.file), feed) == DENIED
    assert (
        await group_error(
            stack.settings(mine.file), mine.feeds["answers"], f"{longer.group_prefix}g"
        )
        == "GroupAuthorizationFailedError"
    )


async def test_a_lab_named_like_an_input_topic_gets_nothing_of_that_topic(
    stack: Stack, new_lab: NewLab
) -> None:
    # Under a "lab.<lab id>." scheme this lab's prefix would cover lab.submissions.dlq.
    namesake = stack.settings((await new_lab("submissions")).file)
    for topic in ("lab.submissions", "lab.submissions.dlq"):
        assert await fetch_error(namesake, topic) == DENIED
    async with KafkaAdmin(namesake) as admin:
        visible = set(await admin.client.list_topics())
    assert "lab.submissions.dlq" not in visible


@pytest.mark.parametrize("lab_id", ["acme.x", "acme_x", "Acme", "a" * 64])
async def test_registering_a_lab_id_that_could_cover_another_labs_names_is_refused(
    stack: Stack, tmp_path: Path, lab_id: str
) -> None:
    with pytest.raises(InvalidTenantId):
        await provision_lab(stack.operator, lab_id, tmp_path / "lab.json")
    assert not (tmp_path / "lab.json").exists()
