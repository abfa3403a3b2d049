r"""Evaluation's state: evaluations, their jobs (one per planned suite), leases and
assignments of external evaluators (the evaluators and their keys are the trust
library's registry). Plain values, returned by repository.py.

A job's life (jobs.py holds the decisions that move it)::

    pending --claim--> running --success--> completed
       ^                  |  \--failure, attempts left (backoff)--> pending
       |                  |  \--failure, no attempts left---------> failed
       |                  |  \--failure no retry can fix---------> failed (credential_not_owned)
       +--lease expired---+  (a killed worker counts as a failed attempt)
    pending/running --window closed--> incomplete
    pending/running --withdrawn------> cancelled

An evaluation is open until it ends (``ended_by``): all suites ended, the
window closed, the submission was withdrawn, or no suite applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from contracts.events.common import RiskDomain
from contracts.events.evaluation import EvaluationEnd, FailureKind


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {JobState.COMPLETED, JobState.FAILED, JobState.INCOMPLETE, JobState.CANCELLED}

TRANSITIONS: dict[JobState, set[JobState]] = {
    JobState.PENDING: {JobState.RUNNING, JobState.INCOMPLETE, JobState.CANCELLED},
    JobState.RUNNING: {
        JobState.COMPLETED,
        JobState.PENDING,
        JobState.FAILED,
        JobState.INCOMPLETE,
        JobState.CANCELLED,
    },
}


class InvalidTransition(Exception):
    pass


def check_transition(current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS.get(current, set()):
        raise InvalidTransition(f"a {current} job cannot become {target}")


@dataclass(frozen=True)
class Evaluation:
    submission_id: UUID
    lab_id: str
    model_id: str
    registry_version: str
    deadline: datetime
    ended_by: EvaluationEnd | None
    window_closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        """Jobs may still run and record results."""
        return self.ended_by is None

    def window_open(self, now: datetime) -> bool:
        """Findings may still be recorded: the review window has not closed."""
        return self.window_closed_at is None and now < self.deadline


@dataclass(frozen=True)
class JobView:
    """What the evaluation's outcome needs to know about one job."""

    job_id: UUID
    suite_id: str
    suite_version: str
    domain: RiskDomain
    state: JobState
    attempts: int
    finding_ids: list[UUID] = field(default_factory=list)


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to a worker: everything one attempt needs."""

    job_id: UUID
    submission_id: UUID
    lab_id: str
    model_id: str
    suite_id: str
    suite_version: str
    domain: RiskDomain
    capability: str
    task_ref: str
    timeout_seconds: int
    max_attempts: int
    attempt: int
    lease_token: UUID
    endpoint: str
    api_model: str
    credential_ref: str
    deadline: datetime
    traceparent: str | None

    @property
    def lease(self) -> Lease:
        return Lease(self.job_id, self.submission_id, self.attempt, self.lease_token)

    @property
    def context(self) -> JobContext:
        """The job a result of this attempt belongs to (JobContext's fields, from here)."""
        return JobContext(**{f.name: getattr(self, f.name) for f in fields(JobContext)})


@dataclass(frozen=True)
class Lease:
    """The attempt a worker holds: its result counts only while the lease does."""

    job_id: UUID
    submission_id: UUID
    attempt: int
    token: UUID


@dataclass(frozen=True)
class LockedJob:
    job_id: UUID
    submission_id: UUID
    suite_id: str
    suite_version: str
    domain: RiskDomain
    state: JobState
    attempts: int
    max_attempts: int
    lease_token: UUID | None

    @property
    def view(self) -> JobView:
        return JobView(
            self.job_id, self.suite_id, self.suite_version, self.domain, self.state, self.attempts
        )


@dataclass(frozen=True)
class JobContext:
    """The job a result belongs to."""

    job_id: UUID
    submission_id: UUID
    model_id: str
    suite_id: str
    suite_version: str
    domain: RiskDomain
    capability: str
    attempt: int


@dataclass(frozen=True)
class Failure:
    """How an attempt failed. ``kind`` and ``message`` are published (EvaluationFailed)
    and stored; ``detail`` (Inspect's error text, a child's stderr) may quote the
    sample, the prompt or the model's reply, so it goes to the service log only (and
    is in the attempt's Inspect log, which is restricted evidence)."""

    kind: FailureKind
    message: str
    detail: str = ""


@dataclass(frozen=True)
class Assignment:
    """An operator assigned an external evaluator to a submission; only then (and
    while its window is open) are that evaluator's findings about it accepted."""

    evaluator_id: str
    submission_id: UUID
    assigned_at: datetime
    assigned_by: str
