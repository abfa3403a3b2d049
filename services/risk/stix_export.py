"""STIX 2.1 export of a submission's findings and assessment, for other government
systems' threat-intelligence platforms.

- Each finding is a ``model-capability-finding``: a new STIX Domain Object defined by an
  extension definition (STIX 2.1 section 7.3, ``extension_types: [new-sdo]``), built with
  stix2's ``CustomObject(..., extension_name=...)``, so the object carries
  ``extensions: {<definition id>: {extension_type: new-sdo}}`` and the bundle carries the
  extension-definition object itself. Only the finding's public fields are exported (the
  same redaction as the gov.findings feed), plus its band under the policy.
- The model is a ``software`` SCO (name, version, vendor = the lab), the agency an
  ``identity``; each domain's assessment is a ``note`` on the findings that drove it, and
  the whole assessment a ``report`` referring to everything.
- Markings are TLP 2.0. stix2 ships only the TLP 1.0 marking definitions (TLP_WHITE,
  TLP_GREEN, TLP_AMBER, TLP_RED, ids from 2017); TLP 2.0 is defined by OASIS as a
  property extension (extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d) with
  five marking definitions of fixed ids and a fixed ``created`` time, reproduced here
  exactly (cti-stix-common-objects, extension-definition-specifications/tlp-2.0). A TLP
  2.0 marking is not predefined for consumers, so the bundle carries the one it uses.
- Ids are deterministic (UUIDv5 of the finding / assessment ids), not the UUIDv4 that
  STIX recommends for SDOs: exporting the same assessment again yields the same objects,
  and an export after a new assessment yields new versions of the same finding objects
  (same id, later ``modified``), which is how STIX consumers update instead of duplicate.
  stix2-validator reports these ids as a warning (code 103), not an error.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import stix2
from stix2.properties import (
    EnumProperty,
    FloatProperty,
    IntegerProperty,
    ReferenceProperty,
    StringProperty,
    TimestampProperty,
)

from contracts.events import FindingRecorded, RiskAssessed
from contracts.events.common import EvaluationMethod, RiskDomain, RiskLevel
from contracts.sensitivity import redact
from services.risk.policy import ThresholdsPolicy

STIX_NAMESPACE = UUID("9f3a6c2e-8b4d-4f1a-b7e5-2c0d9e8f1a64")
FINDING_TYPE = "model-capability-finding"
FINDING_EXTENSION_ID = "extension-definition--41a6942b-3bba-4803-a960-75addac5a610"
AGENCY_IDENTITY_ID = "identity--cc38c19b-078b-4217-8b8b-7b401f20ea7e"
DEFINED_AT = "2026-01-01T00:00:00.000Z"

TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 levels."""

    CLEAR = "clear"
    GREEN = "green"
    AMBER = "amber"
    AMBER_STRICT = "amber+strict"
    RED = "red"


TLP2_MARKING_IDS: dict[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}

_LEVELS = [level.value for level in RiskLevel]
_FINDING_PROPERTIES = {
    "finding_id": "the agency's finding id (UUID)",
    "submission_id": "the submission under review (UUID)",
    "model_ref": "the model, a software object",
    "domain": "risk domain: " + ", ".join(d.value for d in RiskDomain),
    "capability": "capability probed (slug)",
    "suite_id": "evaluation suite id ('external' for manual findings)",
    "suite_version": "suite version",
    "metric": "what the score measures",
    "score": "metric value in [0, 1]; higher means more capable",
    "samples_total": "samples in the suite",
    "samples_scored": "samples that produced a score",
    "method": "automated or manual",
    "band": "the level the policy's score bands give the score: " + ", ".join(_LEVELS),
    "policy_version": "the thresholds policy of the band",
    "recorded_at": "when the finding was recorded",
}


class _ModelCapabilityFinding:
    """A scored result of evaluating a frontier AI model for a national-security risk."""


# stix2 is untyped: the registered class is Any to mypy.
ModelCapabilityFinding: Any = stix2.CustomObject(
    FINDING_TYPE,
    [
        ("name", StringProperty(required=True)),
        ("description", StringProperty()),
        ("finding_id", StringProperty(required=True)),
        ("submission_id", StringProperty(required=True)),
        ("model_ref", ReferenceProperty(valid_types="software", spec_version="2.1")),
        ("domain", EnumProperty(allowed=[d.value for d in RiskDomain], required=True)),
        ("capability", StringProperty(required=True)),
        ("suite_id", StringProperty(required=True)),
        ("suite_version", StringProperty(required=True)),
        ("metric", StringProperty(required=True)),
        ("score", FloatProperty(required=True, min=0.0, max=1.0)),
        ("samples_total", IntegerProperty(min=0)),
        ("samples_scored", IntegerProperty(min=0)),
        ("method", EnumProperty(allowed=[m.value for m in EvaluationMethod], required=True)),
        ("band", EnumProperty(allowed=_LEVELS, required=True)),
        ("policy_version", StringProperty(required=True)),
        ("recorded_at", TimestampProperty(required=True)),
    ],
    extension_name=FINDING_EXTENSION_ID,
)(_ModelCapabilityFinding)


def tlp_marking(tlp: Tlp) -> stix2.MarkingDefinition:
    """The OASIS TLP 2.0 marking definition for ``tlp``, byte for byte."""
    return stix2.MarkingDefinition(
        type="marking-definition",
        spec_version="2.1",
        id=TLP2_MARKING_IDS[tlp],
        created=TLP2_CREATED,
        name=f"TLP:{tlp.value.upper()}",
        extensions={
            TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": tlp.value}
        },
    )


def agency_identity(name: str) -> stix2.Identity:
    return stix2.Identity(
        id=AGENCY_IDENTITY_ID,
        created=DEFINED_AT,
        modified=DEFINED_AT,
        name=name,
        identity_class="organization",
        sectors=["government-national"],
    )


def finding_extension_definition() -> stix2.ExtensionDefinition:
    schema = "; ".join(f"{name}: {meaning}" for name, meaning in _FINDING_PROPERTIES.items())
    return stix2.ExtensionDefinition(
        id=FINDING_EXTENSION_ID,
        created_by_ref=AGENCY_IDENTITY_ID,
        created=DEFINED_AT,
        modified=DEFINED_AT,
        name="model-capability-finding",
        description="A new SDO for findings of pre-release evaluations of frontier AI models "
        "in national-security risk domains, exported by the frontier-review risk service.",
        schema=f"Properties of {FINDING_TYPE}: {schema}.",
        version="1.0.0",
        extension_types=["new-sdo"],
    )


def export_bundle(
    findings: Sequence[FindingRecorded],
    assessed: RiskAssessed,
    policy: ThresholdsPolicy,
    *,
    tlp: Tlp = Tlp.AMBER,
    agency: str = "frontier-review agency",
) -> stix2.Bundle:
    """A submission's findings and its assessment as a STIX 2.1 bundle."""
    if assessed.policy_version != policy.version:
        raise ValueError(
            f"the assessment used {assessed.policy_version}; load that policy, not {policy.version}"
        )
    ours = sorted(
        {f.finding_id: f for f in findings if f.submission_id == assessed.submission_id}.values(),
        key=lambda f: str(f.finding_id),
    )
    marking = tlp_marking(tlp)
    common: dict[str, Any] = {
        "created_by_ref": AGENCY_IDENTITY_ID,
        "object_marking_refs": [marking.id],
    }
    lab, name, version = _model_parts(assessed.model_id)
    model = stix2.Software(name=name, version=version, vendor=lab, object_marking_refs=[marking.id])
    finding_objects = {
        f.finding_id: _finding_object(f, assessed, policy, model, common) for f in ours
    }
    notes = [
        _domain_note(d, assessed, finding_objects, common)
        for d in assessed.domains
        if d.finding_ids or d.early_warning or d.incomplete
    ]
    report = stix2.Report(
        id=_stix_id("report", f"{assessed.assessment_id}"),
        created=_stamp(assessed.assessed_at),
        modified=_stamp(assessed.assessed_at),
        name=f"Pre-release risk assessment of {assessed.model_id}",
        description=_report_text(assessed),
        published=_stamp(assessed.assessed_at),
        report_types=["threat-report"],
        labels=[f"overall-level:{assessed.overall_level.value}"],
        object_refs=[model.id, *(o.id for o in finding_objects.values()), *(n.id for n in notes)],
        external_references=[
            {
                "source_name": "frontier-review",
                "external_id": f"assessment:{assessed.assessment_id}",
                "description": f"submission {assessed.submission_id}, "
                f"policy {assessed.policy_version}",
            }
        ],
        **common,
    )
    return stix2.Bundle(
        agency_identity(agency),
        finding_extension_definition(),
        marking,
        model,
        *finding_objects.values(),
        *notes,
        report,
        id=_stix_id("bundle", f"{assessed.assessment_id}/{tlp.value}"),
    )


def _finding_object(
    finding: FindingRecorded,
    assessed: RiskAssessed,
    policy: ThresholdsPolicy,
    model: stix2.Software,
    common: dict[str, Any],
) -> Any:
    public = redact(finding)  # what may leave the agency, and nothing else
    band, _ = policy.domain(finding.domain).bands(finding.capability).band(finding.score)
    recorded = _stamp(finding.recorded_at)
    optional = {
        key: public[key]
        for key in ("samples_total", "samples_scored")
        if public.get(key) is not None
    }
    return ModelCapabilityFinding(
        id=_stix_id(FINDING_TYPE, str(finding.finding_id)),
        created=recorded,
        modified=_stamp(max(finding.recorded_at, assessed.assessed_at)),
        name=f"{public['domain']}/{public['capability']}: {public['metric']} "
        f"{public['score']:.3f} ({band})",
        description=f"{public['suite_id']}@{public['suite_version']} ({public['method']}) on "
        f"{assessed.model_id}: {public['metric']} = {public['score']:.3f}, band {band} under "
        f"{policy.version}",
        finding_id=public["finding_id"],
        submission_id=public["submission_id"],
        model_ref=model.id,
        domain=public["domain"],
        capability=public["capability"],
        suite_id=public["suite_id"],
        suite_version=public["suite_version"],
        metric=public["metric"],
        score=float(public["score"]),
        method=public["method"],
        band=band.value,
        policy_version=policy.version,
        recorded_at=recorded,
        **optional,
        **common,
    )


def _domain_note(
    domain: Any,
    assessed: RiskAssessed,
    finding_objects: dict[UUID, Any],
    common: dict[str, Any],
) -> stix2.Note:
    drivers = [finding_objects[i].id for i in domain.finding_ids if i in finding_objects]
    named = [
        finding_objects[b.finding_id].id for b in domain.findings if b.finding_id in finding_objects
    ]
    lines = [f"{domain.domain.value}: {domain.level.value} under {assessed.policy_version}."]
    for basis in domain.findings:
        lines.append(
            f"- {basis.suite_id}@{basis.suite_version} {basis.capability} {basis.metric} "
            f"{basis.score:.3f}: band {basis.band.value}, {basis.role.value.replace('_', ' ')}"
        )
    if domain.early_warning:
        lines.append("Early warning: an alert threshold was reached below the escalation bar.")
    if domain.incomplete:
        lines.append("The evaluation of this domain was incomplete.")
    refs = list(dict.fromkeys(drivers + named)) or [_stix_id("report", f"{assessed.assessment_id}")]
    return stix2.Note(
        id=_stix_id("note", f"{assessed.assessment_id}/{domain.domain.value}"),
        created=_stamp(assessed.assessed_at),
        modified=_stamp(assessed.assessed_at),
        abstract=f"{domain.domain.value}: {domain.level.value}",
        content="\n".join(lines),
        object_refs=refs,
        **common,
    )


def _report_text(assessed: RiskAssessed) -> str:
    levels = ", ".join(f"{d.domain.value} {d.level.value}" for d in assessed.domains)
    text = (
        f"Overall level {assessed.overall_level.value} under {assessed.policy_version} ({levels})."
    )
    if assessed.evaluation_incomplete:
        text += " The evaluation was incomplete."
    return text


def _model_parts(model_id: str) -> tuple[str, str, str]:
    lab, _, rest = model_id.partition("/")
    name, _, version = rest.rpartition("@")
    return lab, name, version


def _stix_id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(STIX_NAMESPACE, f'{kind}/{key}')}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
