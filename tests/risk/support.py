"""Builders for the risk service's pure tests: findings, evaluation progress, policies
from a few overrides, escalations, signed reviewer decisions."""

from __future__ import annotations

import base64
import copy
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.events import FindingRecorded, RiskAssessed
from contracts.events.common import RiskDomain, RiskLevel
from contracts.events.evaluation import EvaluationCompleted, EvaluationEnd, SuiteStatus
from contracts.events.reviewers import ReviewerDecisionSubmitted
from contracts.events.risk import EscalationDecision
from services.risk.assessment import reassess
from services.risk.escalation import EscalationPlan, plan_escalation
from services.risk.model import EvaluationProgress, SubmissionRef, SuiteRun
from services.risk.policy import POLICY_DIR, SHIPPED_VERSION, ThresholdsPolicy, load_policy

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUBMISSION_ID = UUID("0b9f4a52-6c1e-4f0e-9d55-6f1d2c3b4a01")
MODEL_ID = "demo-lab/demo-capable@1.0.0"
SUBMISSION = SubmissionRef(SUBMISSION_ID, MODEL_ID, "demo-lab")
SHIPPED_POLICY_FILE = POLICY_DIR / f"{SHIPPED_VERSION}.yaml"

# The shipped proxy suites: (suite id, domain, capability), as in the suite registry.
PROXY_SUITES: list[tuple[str, RiskDomain, str]] = [
    ("cyber-ctf-proxy", RiskDomain.CYBER, "vulnerability-discovery"),
    ("bio-lab-arithmetic-proxy", RiskDomain.BIO, "protocol-troubleshooting"),
    ("chem-stoichiometry-proxy", RiskDomain.CHEM, "synthesis-planning"),
    ("nuclear-decay-proxy", RiskDomain.NUCLEAR, "radiological-knowledge"),
    ("autonomy-planning-proxy", RiskDomain.AUTONOMY, "long-horizon-planning"),
]


def shipped_policy() -> ThresholdsPolicy:
    return load_policy(SHIPPED_POLICY_FILE)


def policy_document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SHIPPED_POLICY_FILE.read_text())
    return loaded


def policy_with(tmp_path: Path, edit: Mapping[str, Any] | None = None) -> ThresholdsPolicy:
    """The shipped policy with ``edit`` merged in (nested dicts merge), loaded from a file."""
    document = _merge(policy_document(), edit or {})
    version = document["version"]
    path = tmp_path / f"{version}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_policy(path)


def _merge(base: dict[str, Any], edit: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in edit.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def finding(
    domain: RiskDomain | str = RiskDomain.CYBER,
    capability: str = "vulnerability-discovery",
    score: float = 1.0,
    *,
    suite_id: str = "cyber-ctf-proxy",
    method: str = "automated",
    evaluator: str = "agency",
    finding_id: UUID | None = None,
    submission_id: UUID = SUBMISSION_ID,
    model_id: str = MODEL_ID,
    recorded_at: datetime = NOW,
) -> FindingRecorded:
    """A FindingRecorded of a proxy suite (or, with method manual, an external evaluator's)."""
    external = method == "manual"
    return FindingRecorded(
        finding_id=finding_id or uuid.uuid4(),
        submission_id=submission_id,
        model_id=model_id,
        suite_id="external" if external else suite_id,
        suite_version="manual" if external else "1.0.0",
        domain=RiskDomain(domain),
        capability=capability,
        score=score,
        metric="success-rate" if external else "accuracy",
        stderr=0.1,
        samples_total=3,
        samples_scored=3,
        method=method,
        evaluator=evaluator,
        evidence_ref=f"inspect-logs/{submission_id}/{suite_id}@1.0.0/attempt-1.eval",
        evidence_sha256="ab" * 32,
        summary="restricted red-team narrative" if external else None,
        external_finding_id=uuid.uuid4() if external else None,
        recorded_at=recorded_at,
    )


def profile_findings(scores: Mapping[RiskDomain, float]) -> list[FindingRecorded]:
    """One finding per proxy suite, scored per domain (the demo model's profiles)."""
    return [
        finding(domain, capability, scores.get(domain, 0.0), suite_id=suite)
        for suite, domain, capability in PROXY_SUITES
    ]


def progress(
    statuses: Mapping[RiskDomain, SuiteStatus | None] | None = None,
    *,
    ended: bool = False,
) -> EvaluationProgress:
    """The proxy suites planned; ``statuses`` sets how some ended; ``ended``: the
    evaluation reported its end (unset statuses then count as completed)."""
    statuses = statuses or {}
    runs = tuple(
        SuiteRun(
            suite,
            "1.0.0",
            domain,
            statuses.get(domain, SuiteStatus.COMPLETED if ended else None),
        )
        for suite, domain, _ in PROXY_SUITES
    )
    return EvaluationProgress(runs, EvaluationEnd.ALL_SUITES_ENDED if ended else None)


def completed_event(
    statuses: Mapping[RiskDomain, SuiteStatus],
    *,
    submission_id: uuid.UUID = SUBMISSION_ID,
    model_id: str = MODEL_ID,
    ended_by: EvaluationEnd = EvaluationEnd.WINDOW_CLOSED,
    at: datetime = NOW,
) -> EvaluationCompleted:
    """Every proxy suite ended, each completed unless ``statuses`` says otherwise."""
    return EvaluationCompleted(
        submission_id=submission_id,
        model_id=model_id,
        ended_by=ended_by,
        suites=[
            {
                "suite_id": suite,
                "suite_version": "1.0.0",
                "domain": domain,
                "status": statuses.get(domain, SuiteStatus.COMPLETED),
                "attempts": 1,
            }
            for suite, domain, _ in PROXY_SUITES
        ],
        completed_at=at,
    )


def assessed(
    findings: Iterable[FindingRecorded],
    policy: ThresholdsPolicy,
    *,
    evaluation: EvaluationProgress | None = None,
    previous: RiskAssessed | None = None,
    now: datetime = NOW,
) -> RiskAssessed:
    result = reassess(findings, evaluation or progress(), policy, SUBMISSION, previous, now)
    assert result is not None, "the assessment did not change"
    return result


def critical_cyber(policy: ThresholdsPolicy) -> EscalationPlan:
    """The demo's escalation: the capable profile's critical cyber level."""
    plan = plan_escalation(assessed([finding()], policy), [], policy, NOW)
    assert plan is not None
    return plan


def high_cyber(policy: ThresholdsPolicy) -> EscalationPlan:
    plan = plan_escalation(assessed([finding(score=0.7)], policy), [], policy, NOW)
    assert plan is not None
    return plan


# --- reviewers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reviewer:
    reviewer_id: str
    key: Ed25519PrivateKey

    @classmethod
    def new(cls, reviewer_id: str) -> Reviewer:
        return cls(reviewer_id, Ed25519PrivateKey.generate())

    def decide(
        self,
        escalation_id: UUID,
        decision: EscalationDecision | str,
        *,
        order: Mapping[str, Any] | None = None,
        interim_order_id: UUID | None = None,
        decision_id: UUID | None = None,
        submission_id: UUID = SUBMISSION_ID,
        justification: str = "Checked the findings and the evidence.",
    ) -> ReviewerDecisionSubmitted:
        """A decision signed by this reviewer (the real signing rule)."""
        unsigned = ReviewerDecisionSubmitted.model_validate(
            {
                "decision_id": decision_id or uuid.uuid4(),
                "escalation_id": escalation_id,
                "submission_id": submission_id,
                "reviewer_id": self.reviewer_id,
                "decision": decision,
                "order": order,
                "interim_order_id": interim_order_id,
                "justification": justification,
                "signature": {
                    "key_id": f"{self.reviewer_id}-k1",
                    "algorithm": "ed25519",
                    "issued_at": NOW,
                    "nonce": secrets.token_urlsafe(18),
                    "value": base64.b64encode(bytes(64)).decode(),
                },
            }
        )
        value = base64.b64encode(self.key.sign(unsigned.signing_bytes())).decode()
        signature = unsigned.signature.model_copy(update={"value": value})
        return unsigned.model_copy(update={"signature": signature})


def order(**scope: Any) -> dict[str, Any]:
    """A restriction order a reviewer signs: effective in an hour, compliance in a day."""
    return {
        "scope": scope or {"nationality_rule": "any", "country_groups": ["arms-embargoed"]},
        "effective_at": NOW + timedelta(hours=1),
        "expires_at": NOW + timedelta(days=180),
        "compliance_deadline": NOW + timedelta(days=1),
    }


def levels(result: RiskAssessed) -> dict[RiskDomain, RiskLevel]:
    return {d.domain: d.level for d in result.domains}
