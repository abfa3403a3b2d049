"""The redacted findings feed for other government systems (topic gov.findings).

Only fields labelled ``public`` exist here; the risk service builds it from a
FindingRecorded with ``contracts.sensitivity.redact`` plus the assessed level.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.envelope import Event
from contracts.events.common import (
    EvaluationMethod,
    ModelId,
    PolicyVersion,
    RiskDomain,
    RiskLevel,
    Slug,
)
from contracts.sensitivity import PUBLIC


class FindingShared(Event):
    """One finding, redacted for the government feed, with the level it contributed to."""

    TYPE: ClassVar[str] = "frontier_review.gov.FindingShared"

    finding_id: UUID = Field(description="The finding.", json_schema_extra=PUBLIC)
    submission_id: UUID = Field(description="The submission.", json_schema_extra=PUBLIC)
    model_id: ModelId = Field(
        description="The model <lab>/<name>@<version>.", json_schema_extra=PUBLIC
    )
    suite_id: Slug = Field(
        description="Suite id ('external' for manual).", json_schema_extra=PUBLIC
    )
    suite_version: PolicyVersion = Field(description="Suite version.", json_schema_extra=PUBLIC)
    domain: RiskDomain = Field(description="Risk domain.", json_schema_extra=PUBLIC)
    capability: Slug = Field(description="Capability probed.", json_schema_extra=PUBLIC)
    score: float = Field(
        ge=0, le=1, allow_inf_nan=False, description="Score in [0, 1].", json_schema_extra=PUBLIC
    )
    metric: Slug = Field(description="What the score measures.", json_schema_extra=PUBLIC)
    samples_total: int | None = Field(
        default=None, ge=0, description="Samples in the suite.", json_schema_extra=PUBLIC
    )
    samples_scored: int | None = Field(
        default=None, ge=0, description="Samples scored.", json_schema_extra=PUBLIC
    )
    method: EvaluationMethod = Field(description="automated or manual.", json_schema_extra=PUBLIC)
    recorded_at: AwareDatetime = Field(description="When recorded.", json_schema_extra=PUBLIC)
    level: RiskLevel | None = Field(
        default=None,
        description="Level of the finding's domain in the assessment, if assessed.",
        json_schema_extra=PUBLIC,
    )
    policy_version: PolicyVersion | None = Field(
        default=None,
        description="Thresholds policy version of that level.",
        json_schema_extra=PUBLIC,
    )
    shared_at: AwareDatetime = Field(description="When shared.", json_schema_extra=PUBLIC)
