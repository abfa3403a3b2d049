"""The evaluation of an accepted submission (topic evaluation.events, key submission_id)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.envelope import Event
from contracts.events.common import (
    EvaluationMethod,
    ModelId,
    Part,
    PolicyVersion,
    Rejection,
    RiskDomain,
    Sha256Hex,
    ShortText,
    Slug,
    Text,
)
from contracts.sensitivity import OWNER, PUBLIC, RESTRICTED

SuiteVersion = PolicyVersion


class SuiteStatus(StrEnum):
    COMPLETED = "completed"  # ran to the end, findings recorded
    FAILED = "failed"  # exhausted its attempts (see EvaluationFailed)
    INCOMPLETE = "incomplete"  # stopped when the review window closed
    CANCELLED = "cancelled"  # stopped because the submission was withdrawn


class EvaluationEnd(StrEnum):
    ALL_SUITES_ENDED = "all_suites_ended"
    WINDOW_CLOSED = "window_closed"
    WITHDRAWN = "withdrawn"
    NO_APPLICABLE_SUITES = "no_applicable_suites"  # no suite applies to the model: none ran


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    ERROR = "error"
    ENDPOINT_UNREACHABLE = "endpoint_unreachable"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"
    # credential_ref names a secret outside labs/<the submitting lab>/: refused unread, no retry
    CREDENTIAL_NOT_OWNED = "credential_not_owned"
    # the endpoint is not a public https host (checked before the run and at every
    # connection), or it answered with a redirect, which is never followed: no retry
    ENDPOINT_NOT_ALLOWED = "endpoint_not_allowed"
    WORKER_LOST = "worker_lost"  # the worker stopped heartbeating (crashed) on the last attempt


class PlannedSuite(Part):
    """One suite of the plan, from the versioned suite registry."""

    suite_id: Slug = Field(description="Suite id in the registry.", json_schema_extra=PUBLIC)
    suite_version: SuiteVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    domain: RiskDomain = Field(
        description="Risk domain the suite probes.", json_schema_extra=PUBLIC
    )
    capability: Slug = Field(description="Capability the suite probes.", json_schema_extra=PUBLIC)
    timeout_seconds: int = Field(ge=1, le=86_400, description="Time limit of one attempt.")
    max_attempts: int = Field(ge=1, le=20, description="Attempts before the suite fails.")


class EvaluationStarted(Event):
    """The evaluation of an accepted submission is planned; its jobs are queued."""

    TYPE: ClassVar[str] = "frontier_review.evaluation.EvaluationStarted"

    submission_id: UUID = Field(description="The submission evaluated.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model evaluated.", json_schema_extra=PUBLIC)
    registry_version: PolicyVersion = Field(description="Version of the suite registry used.")
    suites: list[PlannedSuite] = Field(
        min_length=1, max_length=200, description="The planned suites.", json_schema_extra=PUBLIC
    )
    started_at: AwareDatetime = Field(description="When the plan was made.")
    deadline: AwareDatetime = Field(description="Review-window deadline: all jobs stop then.")


class FindingRecorded(Event):
    """One scored result of a suite (automated) or of an external evaluator (manual).

    The fields labelled public are the ones the government feed (FindingShared) may carry.
    """

    TYPE: ClassVar[str] = "frontier_review.evaluation.FindingRecorded"

    finding_id: UUID = Field(
        description="Unique finding id (deterministic per job, so a re-run records no duplicate).",
        json_schema_extra=PUBLIC,
    )
    submission_id: UUID = Field(description="The submission evaluated.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model evaluated.", json_schema_extra=PUBLIC)
    suite_id: Slug = Field(
        description="Suite id; 'external' for manual findings.", json_schema_extra=PUBLIC
    )
    suite_version: SuiteVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    capability: Slug = Field(description="Capability probed.", json_schema_extra=PUBLIC)
    score: float = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Metric value normalised to [0, 1]; higher means more capable.",
        json_schema_extra=PUBLIC,
    )
    metric: Slug = Field(
        description="What the score measures, e.g. accuracy.", json_schema_extra=PUBLIC
    )
    stderr: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Standard error of the score.",
        json_schema_extra=OWNER,
    )
    samples_total: int | None = Field(
        default=None, ge=0, description="Samples in the suite.", json_schema_extra=PUBLIC
    )
    samples_scored: int | None = Field(
        default=None, ge=0, description="Samples that produced a score.", json_schema_extra=PUBLIC
    )
    method: EvaluationMethod = Field(
        description="Automated suite or manual red teaming.", json_schema_extra=PUBLIC
    )
    evaluator: Slug = Field(
        description="'agency' for automated suites, else the external evaluator id.",
        json_schema_extra=OWNER,
    )
    evidence_ref: ShortText = Field(
        description="Where the evidence is (Inspect log path or blob URI).",
        json_schema_extra=RESTRICTED,
    )
    evidence_sha256: Sha256Hex | None = Field(
        default=None,
        description="SHA-256 of the evidence file (the kept Inspect log), lowercase hex.",
        json_schema_extra=RESTRICTED,
    )
    summary: Text | None = Field(
        default=None,
        description="Free-text description (manual findings).",
        json_schema_extra=RESTRICTED,
    )
    external_finding_id: UUID | None = Field(
        default=None,
        description="ExternalFindingSubmitted.external_finding_id, for manual findings.",
        json_schema_extra=OWNER,
    )
    recorded_at: AwareDatetime = Field(
        description="When the finding was recorded.", json_schema_extra=PUBLIC
    )

    @model_validator(mode="after")
    def _samples(self) -> Self:
        if (
            self.samples_total is not None
            and self.samples_scored is not None
            and self.samples_scored > self.samples_total
        ):
            raise ValueError("samples_scored cannot exceed samples_total")
        return self


class SuiteOutcome(Part):
    """How one planned suite ended."""

    suite_id: Slug = Field(description="Suite id.", json_schema_extra=PUBLIC)
    suite_version: SuiteVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    status: SuiteStatus = Field(
        description="completed, failed, incomplete or cancelled.", json_schema_extra=PUBLIC
    )
    attempts: int = Field(ge=0, description="Attempts made.")
    finding_ids: list[UUID] = Field(
        default_factory=list, max_length=1000, description="Findings the suite recorded."
    )


class EvaluationCompleted(Event):
    """Every planned suite has ended, or the window closed / the submission was withdrawn,
    or no suite applies to the model (``no_applicable_suites``: no suites, nothing ran).

    Suites stopped by the window closing have status ``incomplete``.
    """

    TYPE: ClassVar[str] = "frontier_review.evaluation.EvaluationCompleted"

    submission_id: UUID = Field(description="The submission evaluated.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model evaluated.", json_schema_extra=PUBLIC)
    ended_by: EvaluationEnd = Field(description="What ended the evaluation.")
    suites: list[SuiteOutcome] = Field(
        max_length=200,
        description="Per-suite status; empty only when ended_by is no_applicable_suites.",
        json_schema_extra=PUBLIC,
    )
    detail: Text | None = Field(
        default=None,
        description="Why it ended so, when ended_by alone does not say (e.g. the model's "
        "modalities that no enabled suite covers).",
    )
    completed_at: AwareDatetime = Field(description="When the evaluation ended.")

    @model_validator(mode="after")
    def _suites_match_end(self) -> Self:
        if (self.ended_by is EvaluationEnd.NO_APPLICABLE_SUITES) != (not self.suites):
            raise ValueError("suites is empty exactly when ended_by is no_applicable_suites")
        return self

    @property
    def incomplete(self) -> bool:
        """True unless every suite completed; an evaluation of no suites vouches for nothing."""
        return not self.suites or any(s.status is not SuiteStatus.COMPLETED for s in self.suites)


class EvaluationFailed(Event):
    """A suite exhausted its attempts; the error text never contains secrets."""

    TYPE: ClassVar[str] = "frontier_review.evaluation.EvaluationFailed"

    submission_id: UUID = Field(description="The submission evaluated.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(description="The model evaluated.", json_schema_extra=PUBLIC)
    suite_id: Slug = Field(description="The failed suite.", json_schema_extra=PUBLIC)
    suite_version: SuiteVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    attempts: int = Field(ge=1, description="Attempts made.")
    failure: FailureKind = Field(description="Kind of the last failure.")
    error: Text = Field(
        description="Last error (may name the endpoint; never a secret).",
        json_schema_extra=RESTRICTED,
    )
    failed_at: AwareDatetime = Field(description="When the last attempt failed.")


class ExternalFindingRejected(Rejection):
    """An ExternalFindingSubmitted was refused (the evaluator's answer)."""

    TYPE: ClassVar[str] = "frontier_review.evaluation.ExternalFindingRejected"

    submission_id: UUID | None = Field(
        default=None,
        description="The submission named, when readable; else the key is rejected_event_id.",
        json_schema_extra=PUBLIC,
    )
    evaluator_id: Slug | None = Field(
        default=None, description="Evaluator id as claimed.", json_schema_extra=OWNER
    )
    external_finding_id: UUID | None = Field(
        default=None,
        description="The evaluator's finding id, when readable.",
        json_schema_extra=OWNER,
    )

    @model_validator(mode="after")
    def _addressable(self) -> Self:
        if self.submission_id is None and self.rejected_event_id is None:
            raise ValueError("a rejection needs submission_id or rejected_event_id")
        return self
