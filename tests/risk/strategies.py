"""Hypothesis strategies for arbitrary events, from the contract's own JSON Schemas.

``json_for(model)`` draws JSON that the model's validation-mode schema accepts (types,
patterns, lengths, bounds, enums, formats, nested objects and lists); cross-field rules
(model validators) are the caller's to meet, e.g. by ``assume``-ing a validation.
``field_json(model, name)`` does the same for one field, to vary a valid example.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

Schema = dict[str, Any]

TEXT_CAP = 24  # long texts add time, not coverage
LIST_CAP = 3
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))


@cache
def _schema(model: type[BaseModel]) -> Schema:
    return model.model_json_schema(mode="validation")


def json_for(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    schema = _schema(model)
    return _strategy(schema, schema.get("$defs", {}))


def field_json(model: type[BaseModel], name: str) -> st.SearchStrategy[Any]:
    schema = _schema(model)
    return _strategy(schema["properties"][name], schema.get("$defs", {}))


def _strategy(schema: Schema, defs: Schema) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _strategy(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return st.one_of([_strategy(option, defs) for option in schema[combinator]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**31) - 1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**31 + 1) - 1)
        return st.integers(low, high)
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum", schema.get("exclusiveMinimum", -1e9)),
            max_value=schema.get("maximum", schema.get("exclusiveMaximum", 1e9)),
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "string":
        return _string(schema)
    if kind == "array":
        items = _strategy(schema.get("items", {}), defs)
        low = schema.get("minItems", 0)
        return st.lists(
            items, min_size=low, max_size=max(low, min(schema.get("maxItems", 9), LIST_CAP))
        )
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", []))
        properties = schema.get("properties", {})
        return st.fixed_dictionaries(
            {name: _strategy(sub, defs) for name, sub in properties.items() if name in required},
            optional={
                name: _strategy(sub, defs)
                for name, sub in properties.items()
                if name not in required
            },
        )
    raise NotImplementedError(f"no strategy for schema {schema}")


def _string(schema: Schema) -> st.SearchStrategy[str]:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength", 10_000)
    fmt = schema.get("format")
    if fmt == "uuid":
        return st.uuids().map(str)
    if fmt == "date-time":
        return MOMENTS.map(lambda moment: moment.replace(tzinfo=UTC).isoformat())
    if fmt == "date":
        return MOMENTS.map(lambda moment: moment.date().isoformat())
    if fmt == "uri":
        return st.sampled_from(["https://eval.example.test/v1", "https://x.test/"])
    if "pattern" in schema:
        pattern = schema["pattern"].removeprefix("^").removesuffix("$")
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=max(low, min(high, TEXT_CAP)))
