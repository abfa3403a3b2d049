"""Planning: which suites an accepted submission gets, as jobs with stable ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts.events import EvaluationCompleted, EvaluationStarted, SubmissionAccepted
from contracts.events.evaluation import EvaluationEnd, PlannedSuite
from services.evaluation.suite_registry import SuiteRegistry, SuiteSpec

JOB_NAMESPACE = UUID("8f6d3a52-2b0e-4d8a-9c41-7e5f0a1b2c3d")


class NothingToPlan(Exception):
    """No enabled suite applies to the model (e.g. it offers none of their modalities)."""

    def __init__(self, registry_version: str, reason: str) -> None:
        super().__init__(reason)
        self.registry_version = registry_version
        self.reason = reason


@dataclass(frozen=True)
class PlannedJob:
    job_id: UUID
    suite: SuiteSpec


@dataclass(frozen=True)
class EvaluationPlan:
    submission_id: UUID
    registry_version: str
    jobs: list[PlannedJob]


def job_id(submission_id: UUID, suite: SuiteSpec) -> UUID:
    """Deterministic: planning the same submission twice yields the same jobs."""
    return uuid.uuid5(JOB_NAMESPACE, f"{submission_id}/{suite.id}@{suite.version}")


def plan_evaluation(accepted: SubmissionAccepted, registry: SuiteRegistry) -> EvaluationPlan:
    """Every enabled suite whose modalities the model offers."""
    offered = set(accepted.model.modalities)
    suites = [s for s in registry.enabled() if set(s.modalities) <= offered]
    if not suites:
        raise NothingToPlan(
            registry.registry_version,
            f"registry {registry.registry_version} has no enabled suite for the model's "
            f"modalities: {', '.join(sorted(offered))}",
        )
    jobs = [PlannedJob(job_id(accepted.submission_id, s), s) for s in suites]
    return EvaluationPlan(accepted.submission_id, registry.registry_version, jobs)


def evaluation_started(
    accepted: SubmissionAccepted, plan: EvaluationPlan, now: datetime
) -> EvaluationStarted:
    return EvaluationStarted(
        submission_id=accepted.submission_id,
        model_id=accepted.model_id,
        registry_version=plan.registry_version,
        suites=[
            PlannedSuite(
                suite_id=job.suite.id,
                suite_version=job.suite.version,
                domain=job.suite.domain,
                capability=job.suite.capability,
                timeout_seconds=job.suite.timeout_seconds,
                max_attempts=job.suite.max_attempts,
            )
            for job in plan.jobs
        ],
        started_at=now,
        deadline=accepted.deadline,
    )


def nothing_to_evaluate(
    accepted: SubmissionAccepted, reason: str, now: datetime
) -> EvaluationCompleted:
    """The answer for a model no suite applies to: ended at once, nothing ran."""
    return EvaluationCompleted(
        submission_id=accepted.submission_id,
        model_id=accepted.model_id,
        ended_by=EvaluationEnd.NO_APPLICABLE_SUITES,
        suites=[],
        detail=reason,
        completed_at=now,
    )
