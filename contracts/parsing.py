"""The one JSON parser for bytes nobody has verified yet.

RFC 8259 leaves choices to the parser that a hostile sender can play on, and
Python's ``json`` makes some of them in the sender's favour. This profile (close
to I-JSON, RFC 7493, which RFC 8785 signing requires) refuses, with a
``ContractViolation``:

- text that is not UTF-8 (RFC 8259 section 8.1: networked JSON is UTF-8;
  ``json.loads`` would auto-detect UTF-16/32), a byte order mark, NUL bytes;
- syntax errors, and the non-JSON literals ``NaN``, ``Infinity``, ``-Infinity``;
- integer literals of more than ``MAX_INTEGER_DIGITS`` digits (converting them
  is quadratic; pydantic-core's parser refuses them at the same length);
- nesting deeper than ``MAX_DEPTH`` containers;
- for external input (``external=True``): duplicate member names, since the
  value a signature covers must not depend on which duplicate a parser keeps
  (RFC 8785 requires input without them; internal records keep the last, as
  pydantic-core does), and objects of more than ``MAX_MEMBERS`` members;
- strings PostgreSQL cannot store (U+0000, lone surrogates), in member names
  and values: ``invalid_envelope`` outside ``data``, ``schema_violation`` under
  it, naming the path.

Whatever ``decode`` accepts, ``parse_json`` with the same ``external`` accepts
too, so a service may re-read a decoded record's signed ``data`` as received.
``salvage_json`` reads a record decode refused, only to address the answer.

Speed: on a well-formed record the checks for strings and depth cost two byte
scans; the tree is walked only when the bytes contain an escape that could
denote NUL or a surrogate, or more than ``MAX_DEPTH`` brackets.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from typing import Any

from contracts.violation import (
    INVALID_ENVELOPE,
    MALFORMED_JSON,
    SCHEMA_VIOLATION,
    ContractViolation,
    storable,
)

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays (a CloudEvent needs 4)."""

MAX_INTEGER_DIGITS = 4300
"""Longest integer literal, in digits: pydantic-core's limit, and CPython's default."""

MAX_MEMBERS = 256
"""Most members of one object in external input. Lab input forbids unknown members,
so no valid object comes near it; without it, a 1 MB object of 100,000 unknown
members costs half a second of validation errors to refuse."""

# NUL and surrogates can only enter a string parsed from valid UTF-8 JSON text
# through a \u escape (raw control characters and encoded surrogates are
# refused by both parsers), so a document without such an escape needs no walk.
# It also matches an escaped backslash followed by "u0000": the walk then finds
# nothing and the record goes on.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

Path = tuple[str | int, ...]


def parse_json(raw: bytes, *, external: bool) -> Any:
    """``raw`` as a Python value, or ContractViolation (see the module doc).

    ``external``: the bytes come from outside the agency (a lab, an evaluator,
    a reviewer): duplicate member names are refused too.
    """
    text = _text(raw)
    # CPython's int() refuses the same lengths (its default limit), at no cost per
    # literal; a hook does it when the process changed that limit.
    native = sys.get_int_max_str_digits() == MAX_INTEGER_DIGITS
    decoder = _DECODERS[external, native]
    try:
        document = _decode(decoder, text)
    except _DuplicateName:
        # Parsed again to say where: the parse stopped at the first duplicate.
        marked = _decode(_MARKING, text)
        raise ContractViolation.at(MALFORMED_JSON, _duplicates(marked)) from None
    return _inspect(document, raw, repair=False)


def salvage_json(raw: bytes) -> Any:
    """What can be read of a record decode refused, to address the answer to it.

    Never returns a value a service could not store or send on: strings
    PostgreSQL cannot store read as None (and members named by one are left
    out), so do integers beyond the digit limit, NaN/Infinity and numbers too
    large for a float (``1e400``); duplicate names keep the last value. Text
    that is not UTF-8 JSON within the depth limit is still a ContractViolation
    (``malformed_json``): nothing in it can be read.
    """
    return _inspect(_decode(_SALVAGING, _text(raw)), raw, repair=True)


def screen(raw: bytes) -> None:
    """The refusals of ``parse_json(raw, external=False)`` for a record pydantic-core
    will parse itself (decode's lax path).

    pydantic-core already refuses what is not UTF-8 JSON text and integers beyond
    the digit limit, but accepts NUL, NaN and Infinity, and nests to 200 levels;
    and it refuses lone surrogates as a syntax error, where the contract names
    the field. Only bytes that could hold one of those pay for the full parse.
    """
    if (
        _SUSPECT_ESCAPE.search(raw) is not None
        or b"NaN" in raw
        or b"Infinity" in raw
        or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH
    ):
        parse_json(raw, external=False)


# --- text and literals -------------------------------------------------------------


def _text(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        raise ContractViolation(
            MALFORMED_JSON, "starts with a byte order mark; JSON text is UTF-8 without one"
        )
    if b"\x00" in raw:
        raise ContractViolation(
            MALFORMED_JSON, "contains NUL bytes; JSON text must be UTF-8, not UTF-16 or UTF-32"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolation(
            MALFORMED_JSON, f"not UTF-8 (invalid byte at offset {exc.start})"
        ) from None


_TOO_LONG = f"an integer literal has more than {MAX_INTEGER_DIGITS} digits"


class _Refused(Exception):
    """A literal the profile refuses (raised inside the json module's hooks)."""


class _DuplicateName(Exception):
    pass


def _integer(literal: str) -> int:
    if len(literal) > MAX_INTEGER_DIGITS and len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Refused(_TOO_LONG)
    return int(literal)


def _integer_or_none(literal: str) -> int | None:
    try:
        return _integer(literal)
    except (_Refused, ValueError):
        return None


def _finite_or_none(literal: str) -> float | None:
    value = float(literal)
    return value if math.isfinite(value) else None


def _constant(literal: str) -> Any:
    raise _Refused(f"{literal} is not JSON (RFC 8259 has no NaN or Infinity)")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_MEMBERS:
        raise _Refused(f"an object has more than {MAX_MEMBERS} members")
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _DuplicateName
    return members


class _Marked(dict[str, Any]):
    """An object whose member names repeat (only built to report where)."""

    duplicates: list[str]


def _mark(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) == len(pairs):
        return members
    marked = _Marked(members)
    seen: set[str] = set()
    marked.duplicates = []
    for name, _ in pairs:
        if name in seen:
            marked.duplicates.append(name)
        seen.add(name)
    return marked


# (external, CPython's int() enforces MAX_INTEGER_DIGITS itself) -> decoder
_DECODERS = {
    (False, True): json.JSONDecoder(parse_constant=_constant),
    (False, False): json.JSONDecoder(parse_int=_integer, parse_constant=_constant),
    (True, True): json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_constant),
    (True, False): json.JSONDecoder(
        object_pairs_hook=_unique, parse_int=_integer, parse_constant=_constant
    ),
}
_MARKING = json.JSONDecoder(object_pairs_hook=_mark, parse_int=_integer, parse_constant=_constant)
_SALVAGING = json.JSONDecoder(
    parse_int=_integer_or_none, parse_float=_finite_or_none, parse_constant=lambda _: None
)


def _decode(decoder: json.JSONDecoder, text: str) -> Any:
    """``decoder.decode(text)``; every failure but a duplicate name as a ContractViolation."""
    try:
        return decoder.decode(text)
    except _Refused as refused:
        raise ContractViolation(MALFORMED_JSON, str(refused)) from None
    except json.JSONDecodeError as exc:
        raise ContractViolation(
            MALFORMED_JSON, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError:  # int() of a valid literal fails only beyond CPython's digit limit
        raise ContractViolation(MALFORMED_JSON, _TOO_LONG) from None
    except RecursionError:  # deeper than the interpreter's stack: far beyond MAX_DEPTH
        raise ContractViolation(MALFORMED_JSON, _too_deep()) from None


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} objects and arrays"


# --- the walk: depth, unstorable strings --------------------------------------------


def _inspect(document: Any, raw: bytes, *, repair: bool) -> Any:
    """``document``, refused (or with ``repair``, blanked out) for what only the
    parsed tree shows: its depth, and strings PostgreSQL cannot store."""
    strings = _SUSPECT_ESCAPE.search(raw) is not None
    if not strings and raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return document
    if isinstance(document, str):  # a bare string: not a CloudEvent, but parse_json's value
        if not strings or storable(document):
            return document
        if repair:
            return None
        raise _unstorable_violation([((), _what(document, "the string"))])
    unstorable: list[tuple[Path, str]] = []
    stack: list[tuple[Any, Path, int]] = [(document, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        members: list[tuple[Any, Any]]
        if isinstance(node, dict):
            members = list(node.items())
        elif isinstance(node, list):
            members = list(enumerate(node))
        else:
            continue
        if depth > MAX_DEPTH:
            raise ContractViolation(MALFORMED_JSON, _too_deep())
        for key, value in members:
            where = (*path, key)
            if strings and isinstance(key, str) and not storable(key):
                if repair:
                    del node[key]
                    continue
                unstorable.append((where, _what(key, "the member name")))
            if strings and isinstance(value, str) and not storable(value):
                if repair:
                    node[key] = None
                else:
                    unstorable.append((where, _what(value, "the string")))
            elif isinstance(value, dict | list):
                stack.append((value, where, depth + 1))
    if unstorable:
        raise _unstorable_violation(unstorable)
    return document


def _what(text: str, subject: str) -> str:
    nul = "\x00" in text
    return (
        f"{subject} contains {'U+0000 (NUL)' if nul else 'a lone surrogate'}, "
        "which PostgreSQL cannot store"
    )


def _unstorable_violation(found: list[tuple[Path, str]]) -> ContractViolation:
    """``invalid_envelope`` when an envelope attribute holds one, else ``schema_violation``."""
    envelope = [(p, m) for p, m in found if not p or p[0] != "data"]
    reason, chosen = (INVALID_ENVELOPE, envelope) if envelope else (SCHEMA_VIOLATION, found)
    ordered = sorted(chosen, key=lambda problem: dotted(problem[0]))
    return ContractViolation.at(reason, [(dotted(p), m) for p, m in ordered])


def _duplicates(document: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, Path]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Marked):
            for name in dict.fromkeys(node.duplicates):
                found.append((dotted((*path, name)), "duplicate member name"))
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return sorted(found)


def dotted(path: Path) -> str:
    """A field path as pydantic reports it: ``data.contacts.0.email``; ``<root>`` for ()."""
    return ".".join(str(part) for part in path) or "<root>"
