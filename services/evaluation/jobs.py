"""Decisions about jobs: retry or give up, how an evaluation ends, and what a failed
attempt may say in public. The states and their transitions are in model.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts.events import EvaluationCompleted, EvaluationFailed
from contracts.events.evaluation import EvaluationEnd, FailureKind, SuiteOutcome, SuiteStatus
from services.evaluation.model import Failure, InvalidTransition, JobState, JobView


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
NOT_RETRYABLE = frozenset({FailureKind.CREDENTIAL_NOT_OWNED, FailureKind.ENDPOINT_NOT_ALLOWED})


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


def evaluation_failed(
    submission_id: UUID,
    model_id: str,
    job: JobView,
    failure: Failure,
    now: datetime,
) -> EvaluationFailed:
    return EvaluationFailed(
        submission_id=submission_id,
        model_id=model_id,
        suite_id=job.suite_id,
        suite_version=job.suite_version,
        domain=job.domain,
        attempts=max(1, job.attempts),
        failure=failure.kind,
        error=failure.message[:MESSAGE_MAX] or failure.kind.value,
        failed_at=now,
    )


# --- what a failure may say in public --------------------------------------------------
#
# Inspect's error text, the OpenAI SDK's exception text and a crashed child's stderr
# quote what they were handling: the request (system prompt + the sample's question),
# the endpoint's response body, URLs with their query, headers. None of it may reach an
# event. A failure's public message is therefore built here, from fixed templates and
# values of our own (exception names from this table, an HTTP status code, a number of
# seconds), never by cutting or redacting foreign text.

MESSAGE_MAX = 300

# Exception names (openai SDK, httpx, asyncio) -> failure kind and, for the SDK's status
# errors, the HTTP status they stand for; the first that occurs in the error text wins,
# so the more specific names come first.
_KNOWN_ERRORS: tuple[tuple[str, FailureKind, str], ...] = (
    ("APITimeoutError", FailureKind.TIMEOUT, ""),
    ("ReadTimeout", FailureKind.TIMEOUT, ""),
    ("ConnectTimeout", FailureKind.TIMEOUT, ""),
    ("TimeoutError", FailureKind.TIMEOUT, ""),
    ("APIConnectionError", FailureKind.ENDPOINT_UNREACHABLE, ""),
    ("ConnectError", FailureKind.ENDPOINT_UNREACHABLE, ""),
    ("ConnectionRefusedError", FailureKind.ENDPOINT_UNREACHABLE, ""),
    ("BadRequestError", FailureKind.ERROR, "400"),
    ("AuthenticationError", FailureKind.ERROR, "401"),
    ("PermissionDeniedError", FailureKind.ERROR, "403"),
    ("NotFoundError", FailureKind.ERROR, "404"),
    ("ConflictError", FailureKind.ERROR, "409"),
    ("UnprocessableEntityError", FailureKind.ERROR, "422"),
    ("RateLimitError", FailureKind.ERROR, "429"),
    ("InternalServerError", FailureKind.ERROR, "5xx"),
    ("APIStatusError", FailureKind.ERROR, "4xx/5xx"),
)
_HTTP_STATUS = re.compile(r"Error code: ([1-5][0-9]{2})\b")


def inspect_failure(error: str) -> Failure:
    """The public account of an Inspect run that ended in error (``error``: its text)."""
    name, kind, status = next(
        ((name, kind, status) for name, kind, status in _KNOWN_ERRORS if name in error),
        ("", FailureKind.ERROR, ""),
    )
    exact = _HTTP_STATUS.search(error)
    if exact is not None:
        status = exact.group(1)
    if status:
        message = f"the model endpoint answered HTTP {status}"
    elif kind is FailureKind.ENDPOINT_UNREACHABLE:
        message = "the model endpoint could not be reached"
    elif kind is FailureKind.TIMEOUT:
        message = "a call to the model endpoint timed out"
    else:
        message = "the Inspect run ended in an error"
    suffix = f" ({name})" if name else ""
    return Failure(kind, f"{message}{suffix}; details are in the attempt's Inspect log", error)


def child_crashed(returncode: int | None, stderr_tail: str) -> Failure:
    return Failure(
        FailureKind.ERROR,
        f"the Inspect process exited with status {returncode} without a result",
        stderr_tail,
    )


def unreadable_result(problem: str) -> Failure:
    return Failure(FailureKind.ERROR, "the Inspect process returned an unreadable result", problem)


def attempt_timed_out(limit_s: float) -> Failure:
    return Failure(FailureKind.TIMEOUT, f"the attempt exceeded its {limit_s:.0f} s limit")


def deadline_passed() -> Failure:
    return Failure(FailureKind.TIMEOUT, "the review window deadline has passed")


def not_started(exc: BaseException) -> Failure:
    return Failure(
        FailureKind.ERROR,
        f"the Inspect process could not be started ({type(exc).__name__})",
        str(exc),
    )


def endpoint_not_allowed(detail: str, *, at_connection: bool) -> Failure:
    """The endpoint policy refused the lab's endpoint (``detail``: the refusal, which names
    the URL and the address it resolved to: for the service log)."""
    when = "when the Inspect process connected" if at_connection else "before the run"
    return Failure(
        FailureKind.ENDPOINT_NOT_ALLOWED,
        f"the model endpoint is not allowed ({when}): the agency connects only to public "
        "https hosts and follows no redirects; details are in the service log",
        detail,
    )


def worker_lost(attempt: int) -> Failure:
    return Failure(
        FailureKind.WORKER_LOST, f"attempt {attempt}: the worker stopped renewing its lease"
    )
