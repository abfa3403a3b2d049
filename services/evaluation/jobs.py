r"""The job state machine: one job per planned suite, retried until it ends.

pending --claim--> running --success--> completed
   ^                  |  \--failure, attempts left (backoff)--> pending
   |                  |  \--failure, no attempts left---------> failed
   |                  |  \--failure no retry can fix---------> failed (credential_not_owned)
   +--lease expired---+  (a killed worker counts as a failed attempt)
pending/running --window closed--> incomplete
pending/running --withdrawn------> cancelled
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from contracts.events import EvaluationCompleted, EvaluationFailed
from contracts.events.common import RiskDomain
from contracts.events.evaluation import EvaluationEnd, FailureKind, SuiteOutcome, SuiteStatus


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
class RetryPolicy:
    """Exponential backoff: base, 2 x base, 4 x base ... capped at ``max_s``."""

    base_s: float
    max_s: float

    def delay(self, attempts_made: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** max(0, attempts_made - 1)))


@dataclass(frozen=True)
class Retry:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    pass


# Failures that another attempt cannot change: the suite fails at once.
NOT_RETRYABLE = frozenset({FailureKind.CREDENTIAL_NOT_OWNED})


def after_failure(
    attempts_made: int,
    max_attempts: int,
    policy: RetryPolicy,
    failure: FailureKind | None = None,
) -> Retry | GiveUp:
    if attempts_made >= max_attempts or failure in NOT_RETRYABLE:
        return GiveUp()
    return Retry(policy.delay(attempts_made))


def stopped_state(ended_by: EvaluationEnd) -> JobState:
    """What an unfinished job becomes when the evaluation is stopped from outside."""
    if ended_by is EvaluationEnd.WITHDRAWN:
        return JobState.CANCELLED
    if ended_by is EvaluationEnd.WINDOW_CLOSED:
        return JobState.INCOMPLETE
    raise ValueError(f"{ended_by} does not stop jobs")


_STATUS = {
    JobState.COMPLETED: SuiteStatus.COMPLETED,
    JobState.FAILED: SuiteStatus.FAILED,
    JobState.INCOMPLETE: SuiteStatus.INCOMPLETE,
    JobState.CANCELLED: SuiteStatus.CANCELLED,
}


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


def all_ended(jobs: list[JobView]) -> bool:
    return bool(jobs) and all(job.state.terminal for job in jobs)


def evaluation_completed(
    submission_id: UUID,
    model_id: str,
    ended_by: EvaluationEnd,
    jobs: list[JobView],
    now: datetime,
) -> EvaluationCompleted:
    unfinished = [job.suite_id for job in jobs if not job.state.terminal]
    if unfinished:
        raise InvalidTransition(f"suites {unfinished} have not ended")
    return EvaluationCompleted(
        submission_id=submission_id,
        model_id=model_id,
        ended_by=ended_by,
        suites=[
            SuiteOutcome(
                suite_id=job.suite_id,
                suite_version=job.suite_version,
                domain=job.domain,
                status=_STATUS[job.state],
                attempts=job.attempts,
                finding_ids=job.finding_ids,
            )
            for job in jobs
        ],
        completed_at=now,
    )


def classify_failure(error: str) -> FailureKind:
    """The failure kind of an Inspect run that ended in error, from its error text."""
    unreachable = ("APIConnectionError", "ConnectError", "Connection error", "ConnectionRefused")
    if any(marker in error for marker in unreachable):
        return FailureKind.ENDPOINT_UNREACHABLE
    if "APITimeoutError" in error or "TimeoutError" in error:
        return FailureKind.TIMEOUT
    return FailureKind.ERROR


def evaluation_failed(
    submission_id: UUID,
    model_id: str,
    job: JobView,
    failure: FailureKind,
    error: str,
    now: datetime,
) -> EvaluationFailed:
    return EvaluationFailed(
        submission_id=submission_id,
        model_id=model_id,
        suite_id=job.suite_id,
        suite_version=job.suite_version,
        domain=job.domain,
        attempts=max(1, job.attempts),
        failure=failure,
        error=error[:4000] or failure.value,
        failed_at=now,
    )
