"""The STIX 2.1 export: it parses back with stix2, validates with stix2-validator, uses
the OASIS TLP 2.0 markings and a proper extension definition, and carries only public data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stix2
from stix2validator import ValidationOptions, validate_string

from contracts.events.common import RiskDomain
from contracts.events.evaluation import SuiteStatus
from services.risk.stix_export import (
    FINDING_EXTENSION_ID,
    FINDING_TYPE,
    TLP2_EXTENSION_ID,
    TLP2_MARKING_IDS,
    Tlp,
    export_bundle,
    tlp_marking,
)
from tests.risk.support import (
    assessed,
    finding,
    policy_with,
    profile_findings,
    progress,
    shipped_policy,
)

POLICY = shipped_policy()
FINDINGS = [
    *profile_findings({d: 1.0 for d in RiskDomain}),
    finding(RiskDomain.BIO, "uplift", 0.9, method="manual", evaluator="red-team-secret-3f"),
]
ASSESSED = assessed(FINDINGS, POLICY, evaluation=progress({RiskDomain.CHEM: SuiteStatus.FAILED}))

# What the OASIS TLP 2.0 definitions say (cti-stix-common-objects, tlp-2.0), copied here
# so that the exported objects are checked against the published ones, not themselves.
OASIS_TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def bundle_json(**options: Any) -> str:
    serialized: str = export_bundle(FINDINGS, ASSESSED, POLICY, **options).serialize(pretty=True)
    return serialized


def objects(text: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in json.loads(text)["objects"] if o["type"] == kind]


def test_the_bundle_parses_back_with_the_stix2_parser() -> None:
    parsed = stix2.parse(bundle_json(), allow_custom=True)
    types = [o["type"] for o in parsed.objects]
    assert types.count(FINDING_TYPE) == len(FINDINGS)
    assert {
        "identity",
        "extension-definition",
        "marking-definition",
        "software",
        "note",
        "report",
    } <= set(types)
    finding_object = next(o for o in parsed.objects if o["type"] == FINDING_TYPE)
    assert not isinstance(finding_object, dict), "parsed into the registered custom class"
    assert finding_object.extensions[FINDING_EXTENSION_ID].extension_type == "new-sdo"


def test_the_bundle_validates_with_stix2_validator_with_references_enforced() -> None:
    results = validate_string(bundle_json(), ValidationOptions(version="2.1", enforce_refs=True))
    assert results.is_valid, results.errors
    # The only warnings: deterministic (UUIDv5) ids, chosen so a re-export versions the
    # same objects instead of duplicating them (see stix_export's docstring).
    assert results.warnings
    assert all("{103}" in warning for warning in results.warnings), results.warnings


def test_a_strict_validation_only_objects_to_the_deterministic_ids() -> None:
    strict = validate_string(bundle_json(), ValidationOptions(version="2.1", strict=True))
    assert strict.errors
    assert all("{103}" in str(error) for error in strict.errors), strict.errors


@pytest.mark.parametrize("tlp", list(Tlp), ids=lambda t: t.value)
def test_tlp_markings_are_the_oasis_tlp_2_0_marking_definitions(tlp: Tlp) -> None:
    marking = json.loads(tlp_marking(tlp).serialize())
    assert marking == {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": OASIS_TLP2[tlp.value],
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{tlp.value.upper()}",
        "extensions": {
            TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": tlp.value}
        },
    }
    assert TLP2_MARKING_IDS[tlp] not in {
        stix2.TLP_WHITE.id,
        stix2.TLP_GREEN.id,
        stix2.TLP_AMBER.id,
        stix2.TLP_RED.id,
    }, "not stix2's TLP 1.0 definitions"


def test_every_object_carries_the_chosen_marking_and_the_bundle_defines_it() -> None:
    text = bundle_json(tlp=Tlp.RED)
    [marking] = objects(text, "marking-definition")
    assert marking["id"] == OASIS_TLP2["red"]
    for obj in json.loads(text)["objects"]:
        if obj["type"] in {"software", FINDING_TYPE, "note", "report"}:
            assert obj["object_marking_refs"] == [OASIS_TLP2["red"]], obj["type"]


def test_findings_are_a_new_sdo_declared_by_an_extension_definition() -> None:
    text = bundle_json()
    [definition] = objects(text, "extension-definition")
    assert definition["id"] == FINDING_EXTENSION_ID
    assert definition["extension_types"] == ["new-sdo"]
    [identity] = objects(text, "identity")
    assert definition["created_by_ref"] == identity["id"]
    for obj in objects(text, FINDING_TYPE):
        assert obj["extensions"] == {FINDING_EXTENSION_ID: {"extension_type": "new-sdo"}}


def test_a_finding_object_names_score_band_suite_version_and_model() -> None:
    text = bundle_json()
    cyber = next(o for o in objects(text, FINDING_TYPE) if o["domain"] == "cyber")
    [software] = objects(text, "software")
    assert (cyber["score"], cyber["band"], cyber["suite_version"]) == (1.0, "critical", "1.0.0")
    assert (cyber["policy_version"], cyber["model_ref"]) == (POLICY.version, software["id"])
    assert (software["name"], software["version"], software["vendor"]) == (
        "demo-capable",
        "1.0.0",
        "demo-lab",
    )


def test_the_assessment_is_a_report_with_a_note_per_assessed_domain() -> None:
    text = bundle_json()
    [report] = objects(text, "report")
    assert "Overall level critical" in report["description"]
    assert "incomplete" in report["description"]
    ids = {o["id"] for o in json.loads(text)["objects"]}
    assert set(report["object_refs"]) <= ids
    notes = {n["abstract"]: n for n in objects(text, "note")}
    assert "cyber: critical" in notes and "chem: moderate" in notes
    assert "incomplete" in notes["chem: moderate"]["content"]


def test_nothing_but_public_finding_data_is_exported() -> None:
    text = bundle_json()
    for found in FINDINGS:
        assert found.evidence_ref not in text
        assert found.evidence_sha256 is None or found.evidence_sha256 not in text
        if found.summary:
            assert found.summary not in text
    assert "red-team-secret-3f" not in text, "the evaluator is not public"


def test_the_export_is_deterministic() -> None:
    assert bundle_json() == bundle_json()


def test_an_assessment_under_another_policy_is_refused(tmp_path: Path) -> None:
    other = policy_with(tmp_path, {"version": "thresholds-2099.1"})
    with pytest.raises(ValueError, match="load that policy"):
        export_bundle(FINDINGS, ASSESSED, other)
