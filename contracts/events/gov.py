"""What other government systems receive: the redacted findings feed (topic
gov.findings) and the signed checkpoints of the risk service's audit log (topic
gov.audit).

Only fields labelled ``public`` exist here; the risk service builds FindingShared
from a FindingRecorded with ``contracts.sensitivity.redact`` plus the assessed level.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.envelope import Event
from contracts.events.common import (
    Base64Ed25519Signature,
    EvaluationMethod,
    KeyId,
    ModelId,
    PolicyVersion,
    RiskDomain,
    RiskLevel,
    Sha256Hex,
    Signature,
    SignedEvent,
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


class CheckpointSignature(Signature):
    """The risk service's Ed25519 signature over the checkpoint: RFC 8785 canonical JSON
    of the checkpoint's ``data`` without ``signature.value`` (the project's signing rule).

    Every part is public: parties outside the agency verify it with the service's
    published key.
    """

    key_id: KeyId = Field(
        description="Id of the risk service's published key.", json_schema_extra=PUBLIC
    )
    algorithm: Literal["ed25519"] = Field(
        description="Signature algorithm; only Ed25519.", json_schema_extra=PUBLIC
    )
    issued_at: AwareDatetime = Field(description="When signed.", json_schema_extra=PUBLIC)
    nonce: str = Field(
        min_length=16,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Unique per checkpoint (derived from its size and head).",
        json_schema_extra=PUBLIC,
    )
    value: Base64Ed25519Signature = Field(
        description="The 64-byte Ed25519 signature, standard base64 with padding.",
        json_schema_extra=PUBLIC,
    )


class AuditCheckpoint(SignedEvent):
    """A signed statement of the audit log's head, in the spirit of an RFC 9162 signed tree
    head: "the log ``log_id`` had ``size`` entries, the last one hashing to ``head_sha256``".

    Anyone who keeps the checkpoints can later prove that the agency's log was rewritten
    (the entry at ``size`` no longer hashes to ``head_sha256``) or truncated (the log is
    shorter than a signed ``size``). Keyed by ``log_id``: one partition, in order.
    """

    TYPE: ClassVar[str] = "frontier_review.gov.AuditCheckpoint"

    log_id: Slug = Field(description="Which audit log (e.g. 'risk').", json_schema_extra=PUBLIC)
    size: int = Field(
        ge=0,
        description="Number of entries in the log at the checkpoint (sequence of the head).",
        json_schema_extra=PUBLIC,
    )
    head_sha256: Sha256Hex = Field(
        description="Entry hash of the entry at sequence = size (64 zeros for an empty log).",
        json_schema_extra=PUBLIC,
    )
    checkpointed_at: AwareDatetime = Field(
        description="When the head was read and signed.", json_schema_extra=PUBLIC
    )
    signature: CheckpointSignature = Field(
        description="The risk service's signature (key id, issued-at, nonce, value).",
        json_schema_extra=PUBLIC,
    )
