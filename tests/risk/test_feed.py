"""The government feed: nothing labelled other than public ever leaves.

Properties over arbitrary events: every event type of the registry, with arbitrary
values in arbitrary fields, redacts to public fields only, at every depth; and the
FindingShared the risk service builds from an arbitrary finding and assessment carries
nothing of the finding's non-public fields (evidence, summary, evaluator, ...).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from contracts.envelope import Event
from contracts.events import FindingRecorded, FindingShared, RiskAssessed
from contracts.registry import EVENTS
from contracts.sensitivity import Sensitivity, label_of, labels, redact
from services.risk.feed import finding_shared, shared_event_id
from tests.contracts.examples import example
from tests.risk.strategies import field_json, json_for
from tests.risk.support import NOW, assessed, finding, shipped_policy

POLICY = shipped_policy()


def assert_only_public(instance: BaseModel, redacted: Any, path: str = "data") -> None:
    """``redacted`` holds only public fields of ``instance``, and so on all the way down."""
    assert isinstance(redacted, dict), path
    fields = type(instance).model_fields
    for name, value in redacted.items():
        assert name in fields, f"{path}.{name} is not a field"
        assert label_of(fields[name]) is Sensitivity.PUBLIC, f"{path}.{name} is not public"
        _assert_value(getattr(instance, name), value, f"{path}.{name}")


def _assert_value(original: Any, redacted: Any, path: str) -> None:
    if isinstance(original, BaseModel):
        assert_only_public(original, redacted, path)
    elif isinstance(original, list | tuple):
        assert isinstance(redacted, list) and len(redacted) == len(original), path
        for index, (item, out) in enumerate(zip(original, redacted, strict=True)):
            _assert_value(item, out, f"{path}[{index}]")
    elif isinstance(original, dict):
        for key, item in original.items():
            _assert_value(item, redacted[str(key)], f"{path}.{key}")


@cache
def example_json(model: type[Event]) -> str:
    return example(model).model_dump_json()


@st.composite
def varied(draw: st.DrawFn, model: type[Event]) -> Event:
    """A valid ``model`` event with arbitrary values in an arbitrary set of its fields."""
    document = json.loads(example_json(model))
    names = draw(st.sets(st.sampled_from(sorted(model.model_fields)), max_size=4))
    for name in sorted(names):
        document[name] = draw(field_json(model, name))
    try:
        return model.model_validate(document)
    except ValidationError:
        assume(False)
        raise


@pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.__name__)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_redacting_any_event_leaves_only_public_fields_at_every_depth(
    model: type[Event], data: st.DataObject
) -> None:
    instance = data.draw(varied(model))
    assert_only_public(instance, redact(instance))


# --- FindingShared --------------------------------------------------------------------

SECRETS = {
    "evidence_ref": "SECRET-EVIDENCE-REF-7c1e",
    "summary": "SECRET-SUMMARY-9d3a red team narrative",
    "evaluator": "secret-evaluator-5b2f",
    "evidence_sha256": "5ec2e7" + "0" * 58,
    "stderr": 0.123456789,
}
NON_PUBLIC = {
    name for name, label in labels(FindingRecorded).items() if label is not Sensitivity.PUBLIC
}


@st.composite
def findings(draw: st.DrawFn) -> FindingRecorded:
    document = draw(json_for(FindingRecorded)) | {key: value for key, value in SECRETS.items()}
    try:
        return FindingRecorded.model_validate(document)
    except ValidationError:
        assume(False)
        raise


@st.composite
def assessments(draw: st.DrawFn) -> RiskAssessed | None:
    if draw(st.booleans()):
        return None
    document = json.loads(example_json(RiskAssessed))
    document["domains"] = draw(field_json(RiskAssessed, "domains"))
    levels = [d["level"] for d in document["domains"]]
    order = ["low", "moderate", "high", "critical"]
    if not levels or len({d["domain"] for d in document["domains"]}) != len(levels):
        assume(False)
    document["overall_level"] = max(levels, key=order.index)
    return RiskAssessed.model_validate(document)


def test_the_secrets_cover_every_non_public_field_of_a_finding() -> None:
    assert set(SECRETS) | {"external_finding_id"} == NON_PUBLIC


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(findings(), assessments())
def test_a_shared_finding_carries_only_public_values(
    found: FindingRecorded, assessment: RiskAssessed | None
) -> None:
    shared = finding_shared(found, assessment, NOW)
    sent = json.loads(shared.model_dump_json(exclude_none=True))
    public = redact(found)
    added = {"level", "policy_version", "shared_at"}
    for name, value in sent.items():
        assert name in public or name in added, name
        if name in public:
            assert value == public[name], name
    text = json.dumps(sent)
    for secret in SECRETS.values():
        assert str(secret) not in text
    if found.external_finding_id is not None:
        assert str(found.external_finding_id) not in text
    assert set(labels(FindingShared).values()) == {Sensitivity.PUBLIC}


def test_the_shared_level_is_the_level_of_the_findings_domain() -> None:
    found = finding(score=1.0)
    result = assessed([found], POLICY)
    shared = finding_shared(found, result, NOW)
    assert (shared.level, shared.policy_version, shared.shared_at) == (
        result.domains[0].level,
        POLICY.version,
        NOW,
    )
    assert finding_shared(found, None, NOW).level is None


def test_a_finding_is_shared_again_only_when_its_level_changes() -> None:
    found = finding(score=1.0)
    critical = finding_shared(found, assessed([found], POLICY), NOW)
    again = finding_shared(found, assessed([found], POLICY), NOW.replace(hour=14))
    assert shared_event_id(critical) == shared_event_id(again)
    lower = assessed([finding(score=0.7)], POLICY)
    assert shared_event_id(finding_shared(found, lower, NOW)) != shared_event_id(critical)
