"""Property: whatever the bytes, decode returns an event or raises ContractViolation,
and every string of a decoded event can be stored by PostgreSQL.

Hypothesis writes the JSON text itself (``render``), so it can produce what a
JSON library would not: duplicate member names, NaN and Infinity, integer
literals of thousands of digits, deep nesting, NUL and lone surrogates (escaped,
or raw as CESU-8 bytes), UTF-16/32 with or without a byte order mark. Inputs are
valid events of every type with one value replaced, removed or duplicated,
arbitrary JSON-ish documents, and arbitrary bytes. Ids are generated as strings
(hostile text and UUIDs in every spelling), never as other JSON.

Every poison found so far is an ``@example`` (from tests.contracts.hostile), so
a failure replays deterministically.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from contracts import ContractViolation, decode, encode
from contracts.parsing import parse_json, salvage_json
from contracts.registry import EVENTS, TOPIC_BY_NAME, TOPICS, topic_for
from contracts.violation import DECODE_REASONS, storable
from tests.contracts.examples import example_event
from tests.contracts.hostile import POISONS


@dataclass(frozen=True)
class Literal:
    """JSON text put in the document verbatim: numbers and nesting json.dumps can't write."""

    text: str


@dataclass(frozen=True)
class Members:
    """An object as a list of members, so that names may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def render(node: Any, ascii_only: bool) -> str:
    if isinstance(node, Literal):
        return node.text
    if isinstance(node, dict):
        node = Members(tuple(node.items()))
    if isinstance(node, Members):
        members = (f"{render(k, ascii_only)}:{render(v, ascii_only)}" for k, v in node.pairs)
        return "{" + ",".join(members) + "}"
    if isinstance(node, list):
        return "[" + ",".join(render(item, ascii_only) for item in node) + "]"
    if isinstance(node, str):
        return json.dumps(node, ensure_ascii=ascii_only)
    return json.dumps(node)  # None, bool, int, float (NaN and Infinity as Python writes them)


# --- values ----------------------------------------------------------------------

POISON_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d\ude00", "\ud83d", "\\u0000", ""]

hostile_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(POISON_TEXT),
    st.lists(st.sampled_from([*POISON_TEXT, "a", "é", "\u2028"]), max_size=4).map("".join),
)

uuid_text = st.uuids().flatmap(
    lambda u: st.sampled_from([str(u), str(u).upper(), u.hex, "{" + str(u) + "}", u.urn])
)

timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),  # naive
)

numbers = st.one_of(
    st.integers(),
    st.floats(),  # includes nan and inf: rendered as NaN / Infinity
    st.integers(min_value=1, max_value=6000).map(lambda n: Literal("9" * n)),
    st.sampled_from(["1e400", "-0", "1E-99999", "-Infinity", "0.1e1", "3.2e26"]).map(Literal),
    st.integers(min_value=4299, max_value=4302).map(lambda n: Literal("1" * n)),
)

scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text, uuid_text, timestamps)

deep = st.integers(min_value=1, max_value=3000).map(lambda n: Literal("[" * n + "]" * n))

json_ish = st.recursive(
    scalars | deep,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(hostile_text, children), max_size=4).map(
            lambda pairs: Members(tuple(pairs))
        ),
    ),
    max_leaves=10,
)

# --- documents ---------------------------------------------------------------------


def _paths(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from _paths(value, (*path, index))


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, Any]:
    """(topic, a valid event of a random type with one place changed)."""
    model = draw(st.sampled_from(EVENTS))
    document: Any = json.loads(encode(example_event(model)))
    where = draw(st.sampled_from(list(_paths(document))))
    *parents, last = where
    parent = document
    for part in parents:
        parent = parent[part]
    original = parent[last]
    value: Any
    if isinstance(original, str):  # ids and other text stay strings, hostile ones included
        value = draw(st.one_of(hostile_text, uuid_text, timestamps))
    elif isinstance(original, int | float) and not isinstance(original, bool):
        value = draw(numbers)
    else:
        value = draw(json_ish)
    action = draw(
        st.sampled_from(["replace"] * 4 + ["remove", "duplicate", "add member", "unchanged"])
    )
    if action == "unchanged":
        pass
    elif isinstance(parent, list):
        assert isinstance(last, int)
        if action == "remove":
            del parent[last]
        else:
            parent[last] = value
    elif action == "replace":
        parent[last] = value
    elif action == "remove":
        del parent[last]
    elif action == "duplicate":
        pairs = [*parent.items(), (last, value)]
        parent.clear()
        parents_node = document
        for part in parents[:-1]:
            parents_node = parents_node[part]
        replacement = Members(tuple(pairs))
        if parents:
            parents_node[parents[-1]] = replacement
        else:
            document = replacement
    else:
        parent[draw(hostile_text)] = value
    own = topic_for(model).name  # mostly its own topic; sometimes another
    topic = draw(st.sampled_from([own] * 40 + [t.name for t in TOPICS]))
    return topic, document


@st.composite
def records(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic, bytes as they arrive)."""
    kind = draw(st.sampled_from(["mutated"] * 6 + ["json-ish", "bytes"]))
    if kind == "bytes":
        return draw(st.sampled_from([t.name for t in TOPICS])), draw(st.binary(max_size=200))
    if kind == "mutated":
        topic, document = draw(mutated_events())
    else:
        topic, document = draw(st.sampled_from([t.name for t in TOPICS])), draw(json_ish)
    text = render(document, ascii_only=draw(st.booleans()))
    encoding = draw(
        st.sampled_from(["utf-8"] * 8 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
    )
    # surrogatepass: a lone surrogate written raw becomes CESU-8 bytes, as a
    # careless encoder would send them.
    return topic, text.encode(encoding, errors="surrogatepass")


# --- the property ----------------------------------------------------------------------


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _strings(item)


def _poison_examples(test: Any) -> Any:
    for record in POISONS.values():
        test = example(record=record)(test)
    return test


@_poison_examples
@example(record=("lab.submissions", b""))
@example(record=("intake.events", b"[" * 100_000))
@given(record=records())
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_decode_returns_an_event_or_a_contract_violation(record: tuple[str, bytes]) -> None:
    topic, raw = record
    event_types = TOPIC_BY_NAME[topic].event_types
    external = TOPIC_BY_NAME[topic].external
    try:
        decoded = decode(raw, event_types)
    except ContractViolation as violation:
        event(violation.reason)
        assert violation.reason in DECODE_REASONS
        assert all(storable(text) for text in [violation.detail, *violation.errors])
        return
    event("decoded")
    dumped = decoded.model_dump(mode="json")
    assert all(storable(text) for text in _strings(dumped)), dumped
    encode(decoded).decode("utf-8")  # what a service stores or forwards is UTF-8
    # What decode accepted, the parser services use reads too (the signed data as sent).
    parse_json(raw, external=external)


@_poison_examples
@given(record=records())
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_salvage_json_returns_only_storable_strings_or_refuses(record: tuple[str, bytes]) -> None:
    _, raw = record
    try:
        salvaged = salvage_json(raw)
    except ContractViolation as violation:
        assert violation.reason == "malformed_json"
        return
    assert all(storable(text) for text in _strings(salvaged))
    json.dumps(salvaged, allow_nan=False).encode("utf-8")  # a service can send it on


@given(text=uuid_text)
@settings(max_examples=20)
def test_ids_are_generated_as_uuid_text_in_every_spelling(text: str) -> None:
    """The old property test turned ids into lists; these stay strings a UUID parser reads."""
    assert isinstance(text, str)
    assert uuid.UUID(text)
