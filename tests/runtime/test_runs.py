"""Property: applying a batch in set-based runs has exactly the effects of applying its
records one by one — for any mix of good, duplicated, id-reusing, failing, refused,
unstorable, ignored and undecodable records — and applying it again changes nothing;
with the handler's state write executed at once and deferred to the run's end
(``ctx.defer``).

The consumer's ``process`` is driven directly with records as aiokafka delivers them,
against the real PostgreSQL: the state rows, the inbox claims and the outbox rows
(forwarded events and dead letters, in order) of both ways are compared.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from contracts import encode, make_event
from services.runtime import SYSTEM_CLOCK, RuntimeSettings
from services.runtime.consumer import EventConsumer
from services.runtime.database import create_pool, migrate_schema
from tests.kit import drop_schema
from tests.runtime.support import MIGRATIONS, Ping, Pong, counting_handler, ping_topic

TOPIC = "test.runs"
OUT = "test.runs.out"


@dataclass(frozen=True)
class Delivered:
    """A record as aiokafka's consumer hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0
    timestamp_type: int = 1


@dataclass
class Batch:
    values: list[bytes] = field(default_factory=list)

    def records(self) -> list[Delivered]:
        return [Delivered(TOPIC, i % 2, i // 2, b"k", value) for i, value in enumerate(self.values)]


def ping(seq: int, *, event_id: str | None = None, **flags: bool) -> bytes:
    data = Ping(key=f"k{seq % 3}", seq=seq, **flags)
    return encode(make_event(data, source="/t", subject=data.key, event_id=event_id))


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    batch = Batch()
    ids: list[tuple[str, bytes]] = []
    for seq in range(draw(st.integers(1, 25))):
        kind = draw(
            st.sampled_from(
                [
                    "good",
                    "good",
                    "good",
                    "again",
                    "reuse",
                    "fail",
                    "refuse",
                    "unstorable",
                    "pong",
                    "junk",
                ]
            )
        )
        if kind == "again" and ids:
            batch.values.append(draw(st.sampled_from(ids))[1])  # a redelivered copy
        elif kind == "reuse" and ids:
            event_id = draw(st.sampled_from(ids))[0]
            batch.values.append(ping(1000 + seq, event_id=event_id))  # another record, same id
        elif kind == "fail":
            batch.values.append(ping(seq, fail=True))
        elif kind == "refuse":
            batch.values.append(ping(seq, permanent=True))
        elif kind == "unstorable":
            batch.values.append(ping(-1 - seq))  # its state row breaks a CHECK
        elif kind == "pong":
            batch.values.append(encode(make_event(Pong(key="p"), source="/t", subject="p")))
        elif kind == "junk":
            batch.values.append(draw(st.sampled_from([b"[1]", b"{bad", b"\xff\xfe", b"{}"])))
        else:
            event_id = str(uuid.uuid4())
            value = ping(seq, event_id=event_id)
            ids.append((event_id, value))
            batch.values.append(value)
    return batch


def consumer(config: RuntimeSettings, pool: Any, deferred: bool) -> EventConsumer:
    return EventConsumer(
        group="runs",
        topic=TOPIC,
        registry_topic=ping_topic(TOPIC),
        event_types=ping_topic(TOPIC).event_types,
        handlers={Ping: counting_handler(forward_to=OUT, deferred=deferred)},
        ignore=frozenset({Pong}),
        pool=lambda: pool,
        broker=KafkaBroker(config.kafka_bootstrap),
        settings=config,
        clock=SYSTEM_CLOCK,
    )


async def effects(pool: Any) -> dict[str, Any]:
    async with pool.acquire() as conn:
        state = [
            tuple(r)
            for r in await conn.fetch("SELECT event_id, seq, times FROM applied ORDER BY event_id")
        ]
        claims = sorted(r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox"))
        rows = await conn.fetch(
            "SELECT topic, event_type, payload, headers FROM outbox ORDER BY id"
        )
    outbox = []
    for row in rows:
        headers = json.loads(row["headers"])
        payload = bytes(row["payload"])
        if row["event_type"] == "frontier_review.runtime.DeadLetter":
            outbox.append(("dlq", headers["dlq.reason"], hashlib.sha256(payload).hexdigest()))
        else:  # a forwarded event: a new CloudEvent id each time, compare its data
            outbox.append(
                (row["topic"], row["event_type"], json.dumps(json.loads(payload)["data"]))
            )
    return {"state": state, "claims": claims, "outbox": outbox}


async def applied_both_ways(
    base: RuntimeSettings, batch: Batch, deferred: bool
) -> tuple[dict[str, Any], ...]:
    suffix = uuid.uuid4().hex[:8]
    runs = base.model_copy(update={"db_schema": f"test_runs_{suffix}", "consumer_batch_size": 500})
    alone = base.model_copy(update={"db_schema": f"test_alone_{suffix}"})
    results = []
    try:
        for config in (runs, alone):
            await migrate_schema(config, [MIGRATIONS])
        pools = [await create_pool(runs), await create_pool(alone)]
        try:
            together = consumer(runs, pools[0], deferred)
            single = consumer(alone, pools[1], deferred)
            await together.process(batch.records())
            for record in batch.records():
                await single.process([record])
            results = [await effects(pools[0]), await effects(pools[1])]
            await together.process(batch.records())  # the whole batch delivered again
            results.append(await effects(pools[0]))
        finally:
            for pool in pools:
                await pool.close()
    finally:
        await drop_schema(runs)
        await drop_schema(alone)
    return tuple(results)


@examples(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=batches(), deferred=st.booleans())
async def test_runs_apply_what_one_by_one_applies_and_a_redelivery_nothing(
    settings: RuntimeSettings, database: str, batch: Batch, deferred: bool
) -> None:
    quick = settings.model_copy(update={"handler_retry_backoff_s": 0.0})
    together, single, again = await applied_both_ways(quick, batch, deferred)
    assert together == single
    assert again == together, "a redelivered batch changed something"


@pytest.mark.parametrize(
    ("deferred", "unstorable"), [(False, "handler_failed"), (True, "apply_failed")]
)
async def test_the_property_sees_every_kind_of_record(
    settings: RuntimeSettings, database: str, deferred: bool, unstorable: str
) -> None:
    """The generator's kinds all occur in one fixed batch, so the comparison above is not
    vacuous: state, claims, forwarded events and each dead-letter reason (a deferred
    write that fails is the record's own statement failing, not its handler)."""
    first = str(uuid.uuid4())
    original = ping(0, event_id=first)
    batch = Batch(
        [
            original,
            original,  # redelivered
            ping(1, event_id=first + "x"),
            ping(7, event_id=first),  # reuses the id
            ping(2, fail=True),
            ping(3, permanent=True),
            ping(-4),  # unstorable
            ping(5, event_id=first + "y"),  # after it, in the same run
            encode(make_event(Pong(key="p"), source="/t", subject="p")),
            b"{bad",
        ]
    )
    quick = settings.model_copy(update={"handler_retry_backoff_s": 0.0})
    together, single, again = await applied_both_ways(quick, batch, deferred)
    assert together == single == again
    reasons = sorted(entry[1] for entry in together["outbox"] if entry[0] == "dlq")
    assert reasons == sorted(
        ["event_id_reused", "handler_failed", "malformed_json", "test_refused", unstorable]
    )
    assert sorted(seq for _, seq, _ in together["state"]) == [0, 1, 5]
    assert sum(entry[0] == OUT for entry in together["outbox"]) == 3
