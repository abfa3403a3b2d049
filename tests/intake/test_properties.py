"""Property: whatever arrives on lab.submissions ends as exactly one accepted, rejected
or dead-lettered record. Nothing is lost, nothing answered twice, the consumer survives,
and only input nobody could read an answer to (not a JSON object, or naming neither a
CloudEvent id nor a submission id) is dead-lettered: everything addressable is answered.

Hypothesis generates the inputs (arbitrary bytes, arbitrary JSON, valid signed events
with one field deleted or replaced by arbitrary JSON, valid events); they are produced
in one batch and every outcome is matched back to exactly one input.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import CloudEvent, Event, encode
from contracts.events.intake import SubmissionAccepted
from tests.intake.rig import MAX_MESSAGE_BYTES, Rig
from tests.intake.support import Signer, envelope

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)

PATHS: list[tuple[str, ...]] = [
    ("id",),
    ("source",),
    ("type",),
    ("subject",),
    ("time",),
    ("specversion",),
    ("data",),
    ("data", "submission_id"),
    ("data", "lab_id"),
    ("data", "model"),
    ("data", "model", "name"),
    ("data", "model", "training_compute_flop"),
    ("data", "evaluation_access", "endpoint"),
    ("data", "requested_review_days"),
    ("data", "contacts"),
    ("data", "notes"),
    ("data", "signature"),
    ("data", "signature", "value"),
    ("data", "signature", "nonce"),
    ("data", "signature", "issued_at"),
    ("data", "signature", "key_id"),
    ("data", "unknown_field"),
]


@dataclass
class Input:
    value: bytes
    valid: bool = False


def _valid_event(signer: Signer, withdrawal: bool) -> CloudEvent[Event]:
    data = signer.withdrawal(uuid.uuid4()) if withdrawal else signer.filed()
    return envelope(data)


def input_strategy(lab: Signer) -> st.SearchStrategy[Input]:
    @st.composite
    def mutated_events(draw: st.DrawFn) -> Input:
        event = _valid_event(lab, draw(st.booleans()))
        document: Any = json.loads(encode(event))
        path = draw(st.sampled_from(PATHS))
        parent = document
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            return Input(json.dumps(document).encode())
        action = draw(st.sampled_from(["delete", "replace", "tamper", "tamper", "inflate", "huge"]))
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "tamper":  # same type, other value: the signature (or subject) breaks
            value = parent.get(path[-1])
            if isinstance(value, str):
                parent[path[-1]] = value + draw(st.text(min_size=1, max_size=3))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                parent[path[-1]] = value + draw(st.integers(min_value=1, max_value=9))
        elif action == "inflate":
            parent[path[-1]] = "x" * (MAX_MESSAGE_BYTES + 1)
        elif action == "huge":  # a JSON integer the schema takes and RFC 8785 refuses
            parent[path[-1]] = draw(st.integers(min_value=2**53, max_value=10**40))
        else:
            value = draw(json_values)
            if path == ("id",) and isinstance(value, str):
                value = [value]  # keep CloudEvent ids unique: the inbox dedupes by id
            parent[path[-1]] = value
        return Input(json.dumps(document).encode())

    return st.one_of(
        st.binary(max_size=200).map(Input),
        json_values.map(lambda v: Input(json.dumps(v).encode())),
        mutated_events(),
        mutated_events(),
        mutated_events(),
        st.booleans().map(lambda w: Input(encode(_valid_event(lab, w)), valid=not w)),
    )


def huge_compute(signer: Signer) -> Input:
    """A filing whose compute is a JSON integer beyond 2**53: valid by the schema."""
    document = json.loads(encode(_valid_event(signer, False)))
    document["data"]["model"]["training_compute_flop"] = 320_000_000_000_000_000_000_000_000
    return Input(json.dumps(document).encode())


def addressable(value: bytes) -> bool:
    """Could an answer name this input: a JSON object with an event id or a submission id?"""
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return False
    if not isinstance(document, dict):
        return False
    event_id = document.get("id")
    if isinstance(event_id, str) and 0 < len(event_id) <= 200:
        return True
    data = document.get("data")
    submission = data.get("submission_id") if isinstance(data, dict) else None
    try:
        return isinstance(submission, str) and bool(uuid.UUID(submission))
    except ValueError:
        return False


def identifiers(value: bytes) -> tuple[str | None, str | None]:
    """(CloudEvent id, submission id) as the input carries them, where it does."""
    try:
        document = json.loads(value)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    event_id = document.get("id") if isinstance(document.get("id"), str) else None
    data = document.get("data")
    submission = data.get("submission_id") if isinstance(data, dict) else None
    try:
        submission_id = str(uuid.UUID(submission)) if isinstance(submission, str) else None
    except ValueError:
        submission_id = None
    return event_id, submission_id


def perfect_matching(candidates: list[set[int]], inputs: int) -> bool:
    """Can every outcome be matched to a distinct input it names? (Kuhn's algorithm)."""
    owner: dict[int, int] = {}

    def assign(outcome: int, seen: set[int]) -> bool:
        for i in candidates[outcome]:
            if i in seen:
                continue
            seen.add(i)
            if i not in owner or assign(owner[i], seen):
                owner[i] = outcome
                return True
        return False

    return all(assign(o, set()) for o in range(len(candidates))) and len(owner) == inputs


async def test_every_input_ends_accepted_rejected_or_dead_lettered(rig: Rig) -> None:
    lab = rig.signers["a1"]
    generated: list[Input] = []

    def keep(item: Input) -> None:
        generated.append(item)

    run: Callable[[], None] = settings(
        max_examples=60,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(given(input_strategy(lab))(keep))
    run()
    # Always in the batch, whatever Hypothesis drew: each kind of outcome occurs.
    generated += [Input(encode(_valid_event(lab, False)), valid=True) for _ in range(3)]
    generated += [Input(b"\xff\xfe"), Input(encode(_valid_event(lab, True))), huge_compute(lab)]
    positions = [await rig.send(item.value, "property") for item in generated]

    def outcomes() -> int:
        return len(rig.events.records) + len(rig.dlq.records)

    await rig.events.wait(lambda: outcomes() >= len(generated), timeout=60, what="all outcomes")
    await asyncio.sleep(1.5)  # an extra outcome (a double answer) would show up now
    assert outcomes() == len(generated), "every input has exactly one outcome"

    ids = [identifiers(item.value) for item in generated]
    candidates: list[set[int]] = []
    by_position = {position: i for i, position in enumerate(positions)}
    for record in rig.dlq.records:
        headers = {k: v.decode() for k, v in record.headers}
        origin = (int(headers["dlq.origin.partition"]), int(headers["dlq.origin.offset"]))
        candidates.append({by_position[origin]})
        assert record.value == generated[by_position[origin]].value
        assert not addressable(record.value or b""), (
            f"addressable input dead-lettered ({headers.get('dlq.reason')}): "
            f"{(record.value or b'')[:300]!r}"
        )
    answers = rig.events.events()
    assert len(answers) == len(rig.events.records), "intake publishes only valid events"
    for event in answers:
        data = event.data
        answered = next(
            (
                getattr(data, k)
                for k in ("filed_event_id", "rejected_event_id", "requested_event_id")
                if getattr(data, k, None)
            ),
            None,
        )
        named = {
            i
            for i, (event_id, submission_id) in enumerate(ids)
            if (answered is not None and event_id == answered)
            or (answered is None and submission_id == str(getattr(data, "submission_id", None)))
        }
        assert named, f"{event.type} answers no input: {data}"
        candidates.append(named)
    assert perfect_matching(candidates, len(generated))

    accepted = {e.data.filed_event_id for e in answers if isinstance(e.data, SubmissionAccepted)}
    valid_ids = {ids[i][0] for i, item in enumerate(generated) if item.valid}
    assert valid_ids <= accepted, "valid submissions among the noise are accepted"
    assert rig.dlq.records and len(accepted) < len(answers), "all three outcomes occur"
    # The consumer is alive and well after all of it.
    assert isinstance((await rig.answer(lab.filed())).data, SubmissionAccepted)
