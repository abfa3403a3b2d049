"""Properties: an assessment depends on the set of findings and of suite outcomes, not on
the order they arrived in nor on how often (redeliveries)."""

from __future__ import annotations

import uuid
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import (
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    FindingRecorded,
)
from contracts.events.common import RiskDomain
from contracts.events.evaluation import FailureKind, SuiteStatus
from services.risk.assessment import assess, reassess
from services.risk.model import EvaluationProgress
from tests.risk.support import (
    MODEL_ID,
    NOW,
    PROXY_SUITES,
    SUBMISSION,
    SUBMISSION_ID,
    completed_event,
    finding,
    progress,
    shipped_policy,
)

POLICY = shipped_policy()
CAPABILITIES = {
    RiskDomain.CYBER: ["vulnerability-discovery", "exploit-development"],
    RiskDomain.BIO: ["protocol-troubleshooting", "uplift"],
    RiskDomain.CHEM: ["synthesis-planning"],
    RiskDomain.NUCLEAR: ["radiological-knowledge"],
    RiskDomain.AUTONOMY: ["long-horizon-planning", "self-exfiltration"],
}


@st.composite
def findings(draw: st.DrawFn) -> list[FindingRecorded]:
    result = []
    for _ in range(draw(st.integers(0, 12))):
        domain = draw(st.sampled_from(list(RiskDomain)))
        manual = draw(st.booleans())
        result.append(
            finding(
                domain,
                draw(st.sampled_from(CAPABILITIES[domain])),
                draw(st.sampled_from([0.0, 0.2, 1 / 3, 0.5, 2 / 3, 0.8, 0.99, 1.0])),
                method="manual" if manual else "automated",
                evaluator=draw(st.sampled_from(["red-team-a", "red-team-b"]))
                if manual
                else "agency",
                finding_id=uuid.UUID(int=draw(st.integers(1, 2**64))),
            )
        )
    return result


statuses = st.dictionaries(
    st.sampled_from(list(RiskDomain)),
    st.sampled_from([SuiteStatus.COMPLETED, SuiteStatus.FAILED, SuiteStatus.INCOMPLETE]),
)


@settings(max_examples=150, deadline=None)
@given(findings(), statuses, st.randoms(use_true_random=False), st.data())
def test_order_and_duplicates_of_findings_do_not_change_the_assessment(
    original: list[FindingRecorded],
    ended: dict[RiskDomain, SuiteStatus],
    random: Random,
    data: st.DataObject,
) -> None:
    evaluation = progress(ended)
    shuffled = list(original)
    random.shuffle(shuffled)
    redelivered = (
        shuffled + data.draw(st.lists(st.sampled_from(original), max_size=5)) if original else []
    )
    expected = assess(original, evaluation, POLICY)
    again = assess(redelivered, evaluation, POLICY)
    assert again.result_sha256 == expected.result_sha256
    assert again.domains == expected.domains
    first = reassess(original, evaluation, POLICY, SUBMISSION, None, NOW)
    assert first is not None
    assert reassess(redelivered, evaluation, POLICY, SUBMISSION, first, NOW) is None


def _events(ended: dict[RiskDomain, SuiteStatus]) -> list[object]:
    started = EvaluationStarted(
        submission_id=SUBMISSION_ID,
        model_id=MODEL_ID,
        registry_version="2026.1",
        suites=[
            {
                "suite_id": suite,
                "suite_version": "1.0.0",
                "domain": domain,
                "capability": capability,
                "timeout_seconds": 600,
                "max_attempts": 3,
            }
            for suite, domain, capability in PROXY_SUITES
        ],
        started_at=NOW,
        deadline=NOW,
    )
    failed = [
        EvaluationFailed(
            submission_id=SUBMISSION_ID,
            model_id=MODEL_ID,
            suite_id=suite,
            suite_version="1.0.0",
            domain=domain,
            attempts=3,
            failure=FailureKind.ERROR,
            error="boom",
            failed_at=NOW,
        )
        for suite, domain, _ in PROXY_SUITES
        if ended.get(domain) is SuiteStatus.FAILED
    ]
    completed: EvaluationCompleted = completed_event(ended)
    return [started, *failed, completed]


def _fold(events: list[object]) -> EvaluationProgress:
    state = EvaluationProgress()
    for event in events:
        if isinstance(event, EvaluationStarted):
            state = state.started(event)
        elif isinstance(event, EvaluationFailed):
            state = state.failed(event)
        elif isinstance(event, EvaluationCompleted):
            state = state.completed(event)
    return state


@settings(max_examples=100, deadline=None)
@given(statuses, st.randoms(use_true_random=False), st.data())
def test_evaluation_events_in_any_order_and_redelivered_fold_to_the_same_progress(
    ended: dict[RiskDomain, SuiteStatus],
    random: Random,
    data: st.DataObject,
) -> None:
    events = _events(ended)
    shuffled = list(events)
    random.shuffle(shuffled)
    shuffled += data.draw(st.lists(st.sampled_from(events), max_size=4))
    assert _fold(shuffled) == _fold(events)
    assert _fold(events).incomplete == any(s is not SuiteStatus.COMPLETED for s in ended.values())
