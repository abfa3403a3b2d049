"""Poison records that once stalled a partition in the shared runtime.

FastStream used to json-decode each record body before the runtime's consumer
saw it, and contracts.decode let RecursionError escape; both raised outside the
runtime's DLQ path, so the record was nacked and redelivered forever. The
runtime now takes the raw bytes (services/runtime/consumer.py) and decode maps
deep nesting to ``malformed_json``: the record behind the poison is decided.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from contracts.events.intake import SubmissionAccepted
from tests.intake.rig import Rig
from tests.intake.support import envelope, raw

POISONED: set[int] = set()  # partitions an earlier test of this module may have stalled


async def _poison_then_valid(rig: Rig, poison: bytes, headers: list[tuple[str, bytes]]) -> None:
    partitions = list(range(6))  # lab.submissions (contracts.registry)
    while True:  # a partition no earlier poison stalled: each test probes one defect
        event = envelope(rig.signers["a1"].filed())
        partition = DefaultPartitioner()(event.subject.encode(), partitions, partitions)
        if partition not in POISONED:
            break
    POISONED.add(partition)
    await rig.producer.producer.send_and_wait(
        rig.submissions_topic, poison, key=event.subject.encode(), headers=headers
    )
    await rig.send(raw(event), event.subject)  # same key: same partition, behind the poison
    answer = await rig.events.answer(event.id, timeout=6)
    assert isinstance(answer.data, SubmissionAccepted)


async def test_deeply_nested_json_does_not_stall_the_partition(rig: Rig) -> None:
    await _poison_then_valid(rig, b"[" * 5000 + b"]" * 5000, [])


async def test_malformed_body_labelled_json_does_not_stall_the_partition(rig: Rig) -> None:
    await _poison_then_valid(rig, b"{not json", [("content-type", b"application/json")])
