"""Decode cost per record: ``contracts.decode`` is on every consumer's hot path.

    .venv/bin/python -m benchmarks.decode [--rounds 7] [--round-seconds 0.2]

No broker or database: a timing loop in one process. For each input the loop
calls ``decode(raw, topic.event_types)`` (the runtime's call) until a round
lasts ``--round-seconds``, and reports the best round's time per call. Time is
the process's CPU time (``time.process_time``), so waiting for a core that
other processes hold is not counted: on a shared machine wall-clock figures
varied threefold between runs.

1. Well-formed records (~1 KB), two per kind: external input (strict: the safe
   parse, then strict validation) and internal events (lax: byte screen, then
   validation straight from the bytes).
2. Hostile records: the time to refuse each, and what decode does with it.
3. Validation strategies on the well-formed records, to choose one: the old
   json.loads + two model_validate + model_construct; the envelope's attributes
   then ``CloudEvent[Model]``, each by model_validate_json (what decode does);
   one model_validate_json of a discriminated union of the topic's envelopes.

To measure another checkout (e.g. the code before a change), put it first on
the path and run this file from this one:
``PYTHONPATH=/path/to/old/tree .venv/bin/python benchmarks/decode.py``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from benchmarks.common import machine
from contracts import CloudEvent, Event, decode, encode
from contracts.envelope import CloudEventAttributes
from contracts.events import (
    ComplianceAcknowledged,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionFiled,
)
from contracts.registry import topic_for
from tests.contracts.examples import example_event

WELL_FORMED: tuple[type[Event], ...] = (
    SubmissionFiled,
    ComplianceAcknowledged,
    SubmissionAccepted,
    RiskAssessed,
)


def _document(model: type[Event]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode(example_event(model)))
    return document


def _filed(change: Callable[[dict[str, Any]], None]) -> bytes:
    document = _document(SubmissionFiled)
    change(document)
    return json.dumps(document).encode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(document: dict[str, Any]) -> None:
        target = document
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def hostile() -> list[tuple[str, type[Event], bytes]]:
    """(what, model whose topic it is sent on, bytes)."""
    filed = encode(example_event(SubmissionFiled))
    accepted = encode(example_event(SubmissionAccepted))
    digits = b"9" * 5000
    return [
        ("NUL in the CloudEvent id", SubmissionFiled, _filed(_set("id", "a\x00b"))),
        ("NUL in data.notes", SubmissionFiled, _filed(_set("data.notes", "x\x00"))),
        ("lone surrogate in data.notes", SubmissionFiled, _filed(_set("data.notes", "\ud800"))),
        (
            "5000-digit training_compute_flop",
            SubmissionFiled,
            filed.replace(b"3.2e+26", digits),
        ),
        (
            '"30" as requested_review_days',
            SubmissionFiled,
            _filed(_set("data.requested_review_days", "30")),
        ),
        (
            "duplicate key in data",
            SubmissionFiled,
            filed.replace(
                b'"requested_review_days":14',
                b'"requested_review_days":1,"requested_review_days":14',
            ),
        ),
        ("UTF-16 with BOM", SubmissionFiled, filed.decode().encode("utf-16")),
        ("100,000 nested arrays", SubmissionAccepted, b"[" * 100_000 + b"]" * 100_000),
        (
            "1 MB array in an ignored field (internal)",
            SubmissionAccepted,
            accepted[:-1] + b',"padding":[' + b",".join([b"0"] * 499_000) + b"]}",
        ),
        (
            "1 MB array in an extension attribute (external)",
            SubmissionFiled,
            filed[:-1] + b',"padding":[' + b",".join([b"0"] * 499_000) + b"]}",
        ),
        ("NaN in an ignored field (internal)", SubmissionAccepted, accepted[:-1] + b',"x":NaN}'),
        (
            "80,000 unknown members in data (external)",
            SubmissionFiled,
            filed.replace(
                b'"data":{', b'"data":{' + b"".join(b'"k%d":0,' % i for i in range(80_000)), 1
            ),
        ),
    ]


def per_call(call: Callable[[], object], rounds: int, round_seconds: float) -> float:
    """Best round's CPU seconds per call."""
    calls = 1
    while True:  # size a round
        started = time.process_time()
        for _ in range(calls):
            call()
        if time.process_time() - started >= round_seconds / 4:
            break
        calls *= 2
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - started) / calls)
    return best


def outcome(raw: bytes, model: type[Event], **flags: bool) -> str:
    try:
        decode(raw, topic_for(model).event_types, **flags)
    except ValueError as exc:  # ContractViolation is one; other ValueErrors escaped decode
        reason = getattr(exc, "reason", None)
        return str(reason) if reason else f"{type(exc).__name__} escapes decode"
    except RecursionError:
        return "RecursionError escapes decode"
    return "accepted"


def quietly(raw: bytes, model: type[Event], **flags: bool) -> Callable[[], object]:
    event_types = topic_for(model).event_types

    def call() -> object:
        try:
            return decode(raw, event_types, **flags)
        except (ValueError, RecursionError) as exc:
            return exc

    return call


def strategies(model: type[Event]) -> dict[str, Callable[[], object]]:
    raw = encode(example_event(model))
    topic = topic_for(model)
    envelope = CloudEvent[model]  # type: ignore[valid-type]  # (runs on older checkouts too)

    def old() -> object:
        document = json.loads(raw)
        attributes = CloudEventAttributes.model_validate(document)
        data = topic.event_types[attributes.type].model_validate(document["data"])
        return envelope.model_construct(**dict(attributes), data=data)

    # Literal[...] and CloudEvent[...] of runtime values: built dynamically, like the union.
    tag: Any = Literal
    generic: Any = CloudEvent
    members: list[Any] = [
        create_model(f"Tagged{event.__name__}", __base__=generic[event], type=tag[event.TYPE])
        for event in topic.events
    ]
    tagged: Any = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
    union: TypeAdapter[Any] = TypeAdapter(tagged)

    def two_passes() -> object:
        attributes = CloudEventAttributes.model_validate_json(raw)
        assert attributes.type == model.TYPE
        return envelope.model_validate_json(raw)

    def tagged_union() -> object:
        return union.validate_json(raw)

    def tagged_union_as_cloud_event() -> object:
        tagged = union.validate_json(raw)
        return envelope.model_construct(**dict(tagged))

    return {
        "json.loads + model_validate x2 + model_construct (old decode)": old,
        "attributes, then CloudEvent[Model], by model_validate_json": two_passes,
        "discriminated union, model_validate_json (returns a subclass)": tagged_union,
        "discriminated union + model_construct to CloudEvent[Model]": tagged_union_as_cloud_event,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-seconds", type=float, default=0.2)
    args = parser.parse_args()

    def micros(call: Callable[[], object]) -> str:
        return f"{per_call(call, args.rounds, args.round_seconds) * 1e6:,.1f}"

    print(f"machine: {machine()}\n")
    print("| record | topic | bytes | outcome | µs per decode |\n|---|---|---|---|---|")
    for model in WELL_FORMED:
        raw = encode(example_event(model))
        name = topic_for(model).name
        print(
            f"| {model.__name__} | {name} | {len(raw)} | {outcome(raw, model)} | "
            f"{micros(quietly(raw, model))} |"
        )
        if "external" in inspect.signature(decode).parameters and not model.EXTERNAL:
            # What reading internal records strictly too would cost.
            print(
                f"| {model.__name__}, external=True | {name} | {len(raw)} | "
                f"{outcome(raw, model, external=True)} | "
                f"{micros(quietly(raw, model, external=True))} |"
            )
    print("\n| hostile record | topic | bytes | outcome | µs per decode |\n|---|---|---|---|---|")
    for what, model, raw in hostile():
        name = topic_for(model).name
        print(
            f"| {what} | {name} | {len(raw):,} | {outcome(raw, model)} | "
            f"{micros(quietly(raw, model))} |"
        )
    print("\n| strategy (happy path, lax) | record | µs |\n|---|---|---|")
    for model in (SubmissionFiled, SubmissionAccepted):
        for label, call in strategies(model).items():
            print(f"| {label} | {model.__name__} | {micros(call)} |")


if __name__ == "__main__":
    main()
