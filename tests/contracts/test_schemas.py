"""The committed schemas are current, and the compatibility check catches breaking changes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.__main__ import main
from contracts.schemas import (
    SCHEMA_DIR,
    check,
    committed_schemas,
    compatibility_problems,
    expected_schemas,
    generate,
    render,
)

Schema = dict[str, Any]
FILED = "frontier_review.lab.SubmissionFiled.json"
ACCEPTED = "frontier_review.intake.SubmissionAccepted.json"
RISK = "frontier_review.risk.RiskAssessed.json"


def committed(file: str) -> Schema:
    schema: Schema = json.loads((SCHEMA_DIR / file).read_text())
    return schema


def test_committed_schemas_are_up_to_date_and_compatible() -> None:
    problems = check()
    assert not problems, "\n".join(str(p) for p in problems)


def test_rendering_is_deterministic() -> None:
    first = {f: render(s) for f, s in expected_schemas().items()}
    second = {f: render(s) for f, s in expected_schemas().items()}
    assert first == second
    assert all(text.endswith("}\n") for text in first.values())


def test_event_schema_is_the_envelope() -> None:
    schema = committed(FILED)
    assert schema["$id"] == "urn:frontier-review:schema:frontier_review.lab.SubmissionFiled:v1"
    assert schema["properties"]["type"]["const"] == "frontier_review.lab.SubmissionFiled"
    assert {"id", "source", "type", "subject", "time", "data"} <= set(schema["required"])


def test_topic_schema() -> None:
    schema = committed("topics/access.policies.json")
    assert schema["x-topic"]["compacted"] is True
    assert schema["x-topic"]["partitions"] == 3
    assert schema["x-topic"]["key"] == "model_id"
    assert schema["oneOf"] == [
        {"$ref": "urn:frontier-review:schema:frontier_review.access.AccessPolicyPublished:v1"}
    ]


# --- breaking changes: build a mutated "new" schema from the committed one --------


def data_def(schema: Schema, name: str) -> Schema:
    definition: Schema = schema["$defs"][name]
    return definition


def remove_field(s: Schema) -> None:
    del data_def(s, "SubmissionFiled")["properties"]["notes"]


def rename_field(s: Schema) -> None:
    props = data_def(s, "SubmissionFiled")["properties"]
    props["remarks"] = props.pop("notes")


def make_required(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["required"].append("notes")


def add_required_field(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["priority"] = {"type": "integer"}
    data_def(s, "SubmissionFiled")["required"].append("priority")


def string_to_integer(s: Schema) -> None:
    data_def(s, "LabModelInfo")["properties"]["family"]["type"] = "integer"


def number_to_integer(s: Schema) -> None:
    data_def(s, "LabModelInfo")["properties"]["training_compute_flop"]["type"] = "integer"


def remove_enum_value(s: Schema) -> None:
    data_def(s, "Modality")["enum"].remove("audio")


def change_const(s: Schema) -> None:
    data_def(s, "LabSignature")["properties"]["algorithm"]["const"] = "ecdsa-p256"


def lower_max_length(s: Schema) -> None:
    data_def(s, "LabModelInfo")["properties"]["family"]["maxLength"] = 50


def lower_maximum(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["requested_review_days"]["maximum"] = 14


def raise_min_length(s: Schema) -> None:
    data_def(s, "LabModelInfo")["properties"]["family"]["minLength"] = 3


def raise_minimum(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["requested_review_days"]["minimum"] = 7


def remove_nullable(s: Schema) -> None:
    prop = data_def(s, "SubmissionFiled")["properties"]["notes"]
    prop["anyOf"] = [option for option in prop["anyOf"] if option.get("type") != "null"]


def nested_via_ref(s: Schema) -> None:
    # A field inside a referenced definition: DomainAssessment is only reached via $ref.
    del data_def(s, "DomainAssessment")["properties"]["rationale"]


def change_pattern(s: Schema) -> None:
    data_def(s, "Contact")["properties"]["email"]["pattern"] = "^[a-z]+@example\\.org$"


def forbid_unknown_fields(s: Schema) -> None:
    data_def(s, "SubmissionAccepted")["additionalProperties"] = False


BREAKING: dict[str, tuple[str, Callable[[Schema], None], str]] = {
    "removed field": (FILED, remove_field, "data.notes: field removed"),
    "renamed field": (FILED, rename_field, "data.notes: field removed"),
    "field became required": (FILED, make_required, "data.notes: became required"),
    "new required field": (FILED, add_required_field, "data.priority: new field is required"),
    "string -> integer": (FILED, string_to_integer, "data.model.family: type narrowed"),
    "number -> integer": (
        FILED,
        number_to_integer,
        "data.model.training_compute_flop: type narrowed from number to integer",
    ),
    "enum value removed": (FILED, remove_enum_value, "enum values removed: ['audio']"),
    "const changed": (FILED, change_const, "data.signature.algorithm: const changed"),
    "maxLength lowered": (FILED, lower_max_length, "maxLength lowered from 200 to 50"),
    "maximum lowered": (FILED, lower_maximum, "maximum lowered from 30 to 14"),
    "minLength raised": (FILED, raise_min_length, "minLength raised from 1 to 3"),
    "minimum raised": (FILED, raise_minimum, "minimum raised from 1 to 7"),
    "nullable removed": (FILED, remove_nullable, "data.notes: no longer accepts null"),
    "field behind $ref": (RISK, nested_via_ref, "data.domains[].rationale: field removed"),
    "pattern changed": (FILED, change_pattern, "data.contacts[].email: pattern changed"),
    "unknown fields forbidden": (
        ACCEPTED,
        forbid_unknown_fields,
        "unknown fields are now forbidden",
    ),
}


@pytest.mark.parametrize("case", BREAKING)
def test_breaking_change_is_detected(case: str) -> None:
    file, mutate, expected = BREAKING[case]
    old = committed(file)
    new = copy.deepcopy(old)
    mutate(new)
    problems = compatibility_problems(old, new)
    assert any(expected in problem for problem in problems), problems


def add_optional_field(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["priority"] = {"type": "integer"}


def add_enum_value(s: Schema) -> None:
    data_def(s, "Modality")["enum"].append("3d")


def widen_integer_to_number(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["requested_review_days"]["type"] = "number"


def make_nullable(s: Schema) -> None:
    prop = data_def(s, "LabModelInfo")["properties"]["family"]
    data_def(s, "LabModelInfo")["properties"]["family"] = {
        "anyOf": [{k: v for k, v in prop.items() if k != "description"}, {"type": "null"}],
        "description": prop["description"],
    }
    data_def(s, "LabModelInfo")["required"].remove("family")


def relax_bounds(s: Schema) -> None:
    prop = data_def(s, "SubmissionFiled")["properties"]["requested_review_days"]
    prop["maximum"] = 60
    del prop["minimum"]


def change_docs(s: Schema) -> None:
    data_def(s, "SubmissionFiled")["properties"]["notes"]["description"] = "Reworded."
    data_def(s, "SubmissionFiled")["properties"]["notes"]["x-sensitivity"] = "restricted"


COMPATIBLE: dict[str, Callable[[Schema], None]] = {
    "optional field added": add_optional_field,
    "enum value added": add_enum_value,
    "integer -> number": widen_integer_to_number,
    "became nullable and optional": make_nullable,
    "bounds relaxed": relax_bounds,
    "documentation changed": change_docs,
}


@pytest.mark.parametrize("case", COMPATIBLE)
def test_compatible_change_passes(case: str) -> None:
    old = committed(FILED)
    new = copy.deepcopy(old)
    COMPATIBLE[case](new)
    assert compatibility_problems(old, new) == []


def test_every_committed_schema_is_compatible_with_itself() -> None:
    for file, text in committed_schemas().items():
        schema = json.loads(text)
        assert compatibility_problems(schema, copy.deepcopy(schema)) == [], file


def test_event_removed_from_a_topic_is_detected() -> None:
    old = committed("topics/intake.events.json")
    new = copy.deepcopy(old)
    new["x-topic"]["events"].remove("frontier_review.intake.ReviewWindowClosed")
    new["oneOf"].pop()
    problems = compatibility_problems(old, new)
    assert problems == [
        "event type frontier_review.intake.ReviewWindowClosed removed from the topic"
    ]
    added = copy.deepcopy(old)
    added["x-topic"]["events"].append("frontier_review.intake.Something")
    assert compatibility_problems(old, added) == []


def test_topic_key_and_partition_changes_are_detected() -> None:
    old = committed("topics/access.policies.json")
    new = copy.deepcopy(old)
    new["x-topic"]["key"] = "submission_id"
    new["x-topic"]["partitions"] = 1
    assert len(compatibility_problems(old, new)) == 2


# --- the check and generate commands on a scratch copy -----------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for file, text in committed_schemas().items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(text)
    return tmp_path


def test_check_fails_on_a_stale_schema(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = json.loads((scratch / FILED).read_text())
    schema["$defs"]["SubmissionFiled"]["properties"]["notes"]["description"] = "old words"
    (scratch / FILED).write_text(render(schema))
    assert main(["check", "--dir", str(scratch)]) == 1
    assert f"STALE: {FILED}" in capsys.readouterr().err
    assert main(["generate", "--dir", str(scratch)]) == 0
    assert main(["check", "--dir", str(scratch)]) == 0


def test_check_fails_on_missing_and_removed_schemas(scratch: Path) -> None:
    (scratch / ACCEPTED).unlink()
    (scratch / "frontier_review.intake.Retired.json").write_text(render({"type": "object"}))
    kinds = {(p.kind, p.file) for p in check(scratch)}
    assert ("missing", ACCEPTED) in kinds
    assert ("breaking", "frontier_review.intake.Retired.json") in kinds


def test_check_and_generate_refuse_a_breaking_change(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The committed file accepted a longer family name than the models now do.
    schema = json.loads((scratch / FILED).read_text())
    schema["$defs"]["LabModelInfo"]["properties"]["family"]["maxLength"] = 1000
    (scratch / FILED).write_text(render(schema))
    assert main(["check", "--dir", str(scratch)]) == 1
    err = capsys.readouterr().err
    assert f"BREAKING: {FILED}: data.model.family: maxLength lowered from 1000 to 200" in err
    assert main(["generate", "--dir", str(scratch)]) == 1
    assert json.loads((scratch / FILED).read_text()) == schema  # left alone
    assert generate(scratch, allow_breaking=True) == []
    assert check(scratch) == []
