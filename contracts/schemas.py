"""Generate the committed JSON Schemas and check that model changes stay compatible.

Files (under contracts/schemas/):

- ``<TYPE>.json``: the JSON Schema of the whole envelope ``CloudEvent[Model]``,
  ``$id`` = ``Model.dataschema()``, ``properties.type.const`` = ``Model.TYPE``;
- ``topics/<topic>.json``: ``oneOf`` over the topic's event schemas (by ``$id``)
  and an ``x-topic`` block (key, partitions, compacted, producer, events...).

The schemas are generated in pydantic's *validation* mode: they describe what
a consumer built from the models accepts, which is what compatibility is about
(a field with a default is optional on input, whereas the serialization schema
would call it required although ``encode`` omits None values).

Compatibility = the current models still accept everything the committed
schemas accepted, and keep every field and event they promised: no field
removed (a rename is a removal), none newly required, no type narrowed, no
event removed from a topic. Adding optional fields, enum values and events is
fine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from contracts.envelope import CloudEvent, Event
from contracts.registry import TOPICS
from contracts.sensitivity import DEFAULT_SENSITIVITY, LABEL_KEY
from contracts.topic import Topic

SCHEMA_DIR = Path(__file__).parent / "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TOPIC_URN = "urn:frontier-review:topic:"

Schema = dict[str, Any]


# --- generation ------------------------------------------------------------------


def event_schema(model: type[Event]) -> Schema:
    """JSON Schema of ``CloudEvent[model]`` as committed."""
    schema: Schema = CloudEvent[model].model_json_schema(mode="validation")  # type: ignore[valid-type]
    schema["properties"]["type"]["const"] = model.TYPE
    for definition in schema.get("$defs", {}).values():
        # Unlabeled fields are internal (see contracts.sensitivity); say so in the file.
        for prop in definition.get("properties", {}).values():
            prop.setdefault(LABEL_KEY, DEFAULT_SENSITIVITY.value)
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": model.dataschema(), **schema}


def topic_schema(topic: Topic) -> Schema:
    # A topic whose events are not specified yet accepts nothing ("oneOf" must not be empty).
    accepted: Schema = (
        {"oneOf": [{"$ref": event.dataschema()} for event in topic.events]}
        if topic.events
        else {"not": {}}
    )
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{TOPIC_URN}{topic.name}",
        "title": topic.name,
        "description": topic.description,
        **accepted,
        "x-topic": {
            "name": topic.name,
            "producer": topic.producer,
            "external": topic.external,
            "key": topic.key,
            "partitions": topic.partitions,
            "compacted": topic.compacted,
            "retention_ms": -1 if topic.compacted else topic.retention_ms,
            "dlq": topic.dlq,
            "events": [event.TYPE for event in topic.events],
            # Who may produce / consume (roles; contracts.acl derives the Kafka ACLs).
            "writers": [str(role) for role in topic.writers],
            "readers": [str(role) for role in topic.readers],
        },
    }


def expected_schemas(topics: tuple[Topic, ...] = TOPICS) -> dict[str, Schema]:
    """Relative file path -> schema, for every event and topic."""
    files: dict[str, Schema] = {}
    for topic in topics:
        files[f"topics/{topic.name}.json"] = topic_schema(topic)
        for event in topic.events:
            files[f"{event.TYPE}.json"] = event_schema(event)
    return dict(sorted(files.items()))


def render(schema: Schema) -> str:
    """Deterministic file content: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def committed_schemas(directory: Path = SCHEMA_DIR) -> dict[str, str]:
    """Relative file path -> file text of what is on disk."""
    if not directory.is_dir():
        return {}
    return {
        path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.json"))
    }


# --- the check -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: Literal["breaking", "missing", "stale", "unreadable"]
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind.upper()}: {self.file}: {self.message}"


def check(directory: Path = SCHEMA_DIR) -> list[Problem]:
    """Every problem of the committed schemas against the current models."""
    problems: list[Problem] = []
    expected = expected_schemas()
    committed = committed_schemas(directory)
    hint = "run `python -m contracts generate` and commit the result"
    for file, new in expected.items():
        if file not in committed:
            problems.append(Problem("missing", file, f"no committed schema; {hint}"))
            continue
        try:
            old = json.loads(committed[file])
        except json.JSONDecodeError as exc:
            problems.append(Problem("unreadable", file, f"not JSON ({exc}); {hint}"))
            continue
        problems += [Problem("breaking", file, m) for m in compatibility_problems(old, new)]
        if committed[file] != render(new):
            problems.append(Problem("stale", file, f"differs from the models; {hint}"))
    for file in committed.keys() - expected.keys():
        what = "topic" if file.startswith("topics/") else "event type"
        problems.append(Problem("breaking", file, f"{what} removed (no model for it any more)"))
    return sorted(problems, key=lambda p: (p.kind != "breaking", p.file))


def generate(directory: Path = SCHEMA_DIR, *, allow_breaking: bool = False) -> list[Problem]:
    """Write the schemas; refuse (and return the problems) on a breaking change.

    With ``allow_breaking`` the files are rewritten anyway, for a deliberate,
    reviewed break; obsolete files are then deleted too.
    """
    breaking = [p for p in check(directory) if p.kind == "breaking"]
    if breaking and not allow_breaking:
        return breaking
    expected = expected_schemas()
    for file, schema in expected.items():
        path = directory / file
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render(schema)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for file in committed_schemas(directory).keys() - expected.keys():
        (directory / file).unlink()
    return []


# --- compatibility -----------------------------------------------------------------

UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
EXACT = ("pattern", "format", "multipleOf")


def compatibility_problems(old: Schema, new: Schema) -> list[str]:
    """Why ``new`` does not accept what ``old`` accepted (empty: compatible).

    Works for both kinds of committed file: an event schema, or a topic schema
    (recognised by its ``x-topic`` block).
    """
    if "x-topic" in old or "x-topic" in new:
        return _topic_problems(old.get("x-topic", {}), new.get("x-topic", {}))
    return _Comparison(old, new).diff(old, new, "")


def _topic_problems(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    problems = [
        f"event type {event} removed from the topic"
        for event in old.get("events", [])
        if event not in new.get("events", [])
    ]
    for setting in ("key", "compacted"):
        if old.get(setting) != new.get(setting):
            problems.append(f"{setting} changed from {old.get(setting)!r} to {new.get(setting)!r}")
    if new.get("partitions", 0) < old.get("partitions", 0):
        problems.append(
            f"partitions lowered from {old['partitions']} to {new.get('partitions')} "
            "(Kafka cannot shrink a topic)"
        )
    return problems


class _Comparison:
    """Compares two schemas, each resolving ``#/$defs/...`` references in its own root."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self._in_progress: set[tuple[str, str]] = set()  # ref pairs, against cycles

    def diff(self, old: Schema, new: Schema, path: str) -> list[str]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs != ("", "") and refs in self._in_progress:
            return []  # a recursive model: already being compared further up
        self._in_progress.add(refs)
        try:
            return self._diff(_resolve(old, self.old_root), _resolve(new, self.new_root), path)
        finally:
            self._in_progress.discard(refs)

    def _diff(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_options = list(_alternatives(old, self.old_root))
        new_options = list(_alternatives(new, self.new_root))
        if len(old_options) == 1 and len(new_options) == 1:
            return self._diff_single(old_options[0], new_options[0], path)
        # A union: every old alternative must still be accepted by some new one.
        problems: list[str] = []
        for option in old_options:
            candidates = [n for n in new_options if _types_overlap(option, n)]
            if not candidates:
                problems.append(_at(path, f"no longer accepts {_describe(option)}"))
                continue
            attempts = [self._diff_single(option, candidate, path) for candidate in candidates]
            if all(attempts):  # no candidate accepts it: report against the first
                problems += attempts[0]
        return problems

    def _diff_single(self, old: Schema, new: Schema, path: str) -> list[str]:
        problems = [_at(path, message) for message in _narrowed_keywords(old, new)]
        problems += self._diff_object(old, new, path)
        if "items" in new:
            if "items" not in old:
                problems.append(_at(path, "array items are now constrained"))
            else:
                problems += self.diff(old["items"], new["items"], f"{path}[]")
        return problems

    def _diff_object(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_props: dict[str, Schema] = old.get("properties", {})
        new_props: dict[str, Schema] = new.get("properties", {})
        problems: list[str] = []
        for name, old_prop in old_props.items():
            where = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(_at(where, "field removed (or renamed)"))
            else:
                problems += self.diff(old_prop, new_props[name], where)
        old_required = set(old.get("required", []))
        for name in sorted(set(new.get("required", [])) - old_required):
            where = f"{path}.{name}" if path else name
            became = "became required" if name in old_props else "new field is required"
            problems.append(_at(where, became))
        if (
            new.get("additionalProperties") is False
            and old.get("additionalProperties") is not False
        ):
            problems.append(_at(path, "unknown fields are now forbidden"))
        return problems


def _narrowed_keywords(old: Schema, new: Schema) -> Iterator[str]:
    """Keyword-level narrowing of one (non-union) schema."""
    old_types, new_types = _types(old), _types(new)
    lost = {t for t in old_types if not _type_accepted(t, new_types)}
    if lost:
        yield f"type narrowed from {_fmt(old_types)} to {_fmt(new_types)}"
    if "const" in new and old.get("const", _MISSING) != new["const"]:
        if "const" in old:
            yield f"const changed from {old['const']!r} to {new['const']!r}"
        else:
            yield f"now restricted to the constant {new['const']!r}"
    if "enum" in new:
        old_values = old.get("enum", [old["const"]] if "const" in old else None)
        if old_values is None:
            yield f"now restricted to the values {new['enum']!r}"
        elif removed := [v for v in old_values if v not in new["enum"]]:
            yield f"enum values removed: {removed!r}"
    for keyword in UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            yield f"{keyword} lowered from {old.get(keyword, 'unbounded')} to {new[keyword]}"
    for keyword in LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            yield f"{keyword} raised from {old.get(keyword, 'unbounded')} to {new[keyword]}"
    for keyword in EXACT:
        if keyword in new and old.get(keyword) != new[keyword]:
            yield f"{keyword} changed from {old.get(keyword)!r} to {new[keyword]!r}"
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        yield "items must now be unique"


_MISSING = object()


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow local ``$ref``s; sibling keywords next to a ``$ref`` are kept."""
    seen: set[str] = set()
    while "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen or not ref.startswith("#/"):
            break
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
    return schema


def _alternatives(schema: Schema, root: Schema) -> Iterator[Schema]:
    """The flattened members of anyOf/oneOf (a plain schema is its only member)."""
    union = schema.get("anyOf") or schema.get("oneOf")
    if not union:
        yield schema
        return
    for member in union:
        yield from _alternatives(_resolve(member, root), root)


ANY = "any"


def _types(schema: Schema) -> set[str]:
    declared = schema.get("type")
    if declared is None:
        if "properties" in schema:
            return {"object"}
        return {ANY}
    return set(declared) if isinstance(declared, list) else {declared}


def _type_accepted(old_type: str, new_types: set[str]) -> bool:
    return (
        ANY in new_types
        or old_type in new_types
        or (old_type == "integer" and "number" in new_types)
    )


def _types_overlap(old: Schema, new: Schema) -> bool:
    new_types = _types(new)
    return any(_type_accepted(t, new_types) for t in _types(old))


def _describe(schema: Schema) -> str:
    types = _types(schema)
    if types == {"null"}:
        return "null (nullable removed)"
    return _fmt(types)


def _fmt(types: set[str]) -> str:
    return "|".join(sorted(types))


def _at(path: str, message: str) -> str:
    return f"{path or '<root>'}: {message}"
