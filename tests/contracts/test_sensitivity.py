from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from contracts.events import FindingRecorded, FindingShared, SubmissionAccepted, SubmissionFiled
from contracts.registry import EVENTS
from contracts.schemas import event_schema
from contracts.sensitivity import (
    INTERNAL,
    LABEL_KEY,
    PUBLIC,
    RESTRICTED,
    Sensitivity,
    labels,
    redact,
)
from tests.contracts.examples import example


class Inner(BaseModel):
    shown: str = Field(description="public", json_schema_extra=PUBLIC)
    hidden: str = Field(description="restricted", json_schema_extra=RESTRICTED)


class Outer(BaseModel):
    name: str = Field(description="public", json_schema_extra=PUBLIC)
    note: str = Field(description="unlabeled = internal")
    secret_ref: str = Field(description="restricted", json_schema_extra=RESTRICTED)
    inner: Inner = Field(description="public parent", json_schema_extra=PUBLIC)
    inners: list[Inner] = Field(description="public list", json_schema_extra=PUBLIC)
    by_key: dict[str, Inner] = Field(description="public dict", json_schema_extra=PUBLIC)
    kept_away: Inner = Field(description="internal parent", json_schema_extra=INTERNAL)


def _outer() -> Outer:
    inner = Inner(shown="a", hidden="b")
    return Outer(
        name="n",
        note="x",
        secret_ref="vault/key",
        inner=inner,
        inners=[inner, inner],
        by_key={"k": inner},
        kept_away=inner,
    )


def test_redact_keeps_only_allowed_labels_recursively() -> None:
    assert redact(_outer()) == {
        "name": "n",
        "inner": {"shown": "a"},
        "inners": [{"shown": "a"}, {"shown": "a"}],
        "by_key": {"k": {"shown": "a"}},
    }


def test_redact_with_more_labels_allowed() -> None:
    redacted = redact(_outer(), allowed={"public", "internal"})
    assert set(redacted) == {"name", "note", "inner", "inners", "by_key", "kept_away"}
    assert redacted["kept_away"] == {"shown": "a"}
    assert redact(_outer(), allowed=set(Sensitivity)) == _outer().model_dump(mode="json")


def test_unlabeled_fields_are_internal() -> None:
    assert labels(Outer)["note"] is Sensitivity.INTERNAL


def test_redact_returns_json_values() -> None:
    redacted = redact(example(FindingRecorded))
    assert isinstance(redacted["finding_id"], str)
    assert isinstance(redacted["recorded_at"], str)


def test_credentials_endpoints_contacts_and_evidence_are_restricted() -> None:
    restricted: dict[type[BaseModel], set[str]] = {
        SubmissionFiled: {"evaluation_access", "contacts"},
        SubmissionAccepted: {"evaluation_access"},
        FindingRecorded: {"evidence_ref", "summary"},
    }
    for model, fields in restricted.items():
        for name in fields:
            assert labels(model)[name] is Sensitivity.RESTRICTED, f"{model.__name__}.{name}"
    public = redact(example(SubmissionFiled))
    assert "evaluation_access" not in public and "contacts" not in public
    assert "signature" not in public


def test_the_gov_feed_is_all_public_and_built_from_a_redacted_finding() -> None:
    assert set(labels(FindingShared).values()) == {Sensitivity.PUBLIC}
    shared = FindingShared.model_validate(
        redact(example(FindingRecorded)) | {"shared_at": "2026-02-01T00:00:00Z"}
    )
    assert shared.finding_id == example(FindingRecorded).finding_id
    assert set(redact(example(FindingRecorded))) <= set(FindingShared.model_fields)


def test_every_property_in_the_schemas_carries_a_label() -> None:
    for model in EVENTS:
        schema: dict[str, Any] = event_schema(model)
        for definition in schema["$defs"].values():
            for name, prop in definition.get("properties", {}).items():
                assert prop[LABEL_KEY] in set(Sensitivity), f"{model.__name__}: {name}"
