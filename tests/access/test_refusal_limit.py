"""Unauthenticated acknowledgements in a lab's name are counted per claimed lab and hour
and answered at most FR_ACCESS_REFUSALS_ANSWERED_PER_HOUR times (real Kafka + PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import encode, make_event
from contracts.events.access import ComplianceRejected
from contracts.events.common import RejectionReason
from contracts.events.lab import ComplianceAcknowledged
from services.labclient.enforcer import AppliedVersion
from services.runtime import RuntimeSettings
from tests.access.rig import Lab, Rig, model_id, running_rig
from tests.kit import MovableClock

LIMIT = 5


def to_next_hour(clock: MovableClock) -> None:
    """Just past the start of the next clock hour: the test's counts fall into one hour."""
    now = clock.now()
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    clock.advance((start - now).total_seconds() + 5)


async def acked(rig: Rig, ack: ComplianceAcknowledged) -> str:
    event = make_event(ack, source=f"/labs/{ack.lab_id}", subject=ack.model_id)
    await rig.send_raw("lab.compliance", encode(event), event.subject)
    return event.id


async def test_a_flood_of_unauthenticated_acknowledgements_is_answered_up_to_the_hourly_limit(
    settings: RuntimeSettings, kafka: str, database: str
) -> None:
    """Forged acknowledgements claiming a registered lab: the first LIMIT are answered (on
    access.events and the lab's feed), every one is counted in one counter, and the
    lab's own authenticated refusal after them is still answered."""
    async with running_rig(settings, access_refusals_answered_per_hour=LIMIT) as rig:
        to_next_hour(rig.clock)
        now = datetime.now(UTC)
        model = model_id("example-lab")
        version = AppliedVersion(model, 1, "0" * 64, (uuid.uuid4(),), now, now)
        forger = Lab("example-lab", "k1")  # the lab's key id, another private key
        async with rig.answers_feed("example-lab") as feed:
            flood = [await acked(rig, forger.acknowledgement(version)) for _ in range(15)]
            # Same model id, same partition: answered once the flood was processed.
            genuine = await acked(rig, rig.labs["example-lab"].acknowledgement(version))
            told = await rig.answer(ComplianceRejected, rejected_event_id=genuine)
            assert told.reason is RejectionReason.UNKNOWN_POLICY
            await feed.wait(
                lambda: any(
                    getattr(e.data, "rejected_event_id", None) == genuine for e in feed.events()
                ),
                what="the genuine refusal on the lab's feed",
            )
            await feed.linger(1.0)
            on_feed = {getattr(e.data, "rejected_event_id", None) for e in feed.events()}

        answered = [e for e in flood if rig.answers(ComplianceRejected, rejected_event_id=e)]
        assert answered == flood[:LIMIT]
        assert on_feed & set(flood) == set(flood[:LIMIT])
        rows = await rig.fetch(
            "SELECT reason, refused FROM trust_refusal_counts WHERE source = 'example-lab'"
        )
        assert [(r["reason"], r["refused"]) for r in rows] == [("bad_signature", 15)]
