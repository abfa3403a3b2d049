"""Types shared by several contexts: identifiers, risk domains and levels,
signatures, the model description and the rejection shape."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    HttpUrl,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import core_schema

from contracts.envelope import ContractViolation, Event
from contracts.sensitivity import OWNER, PUBLIC, RESTRICTED

# --- identifiers ---------------------------------------------------------------

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
"""Lowercase identifier chosen by the agency or a lab: lab ids, suite ids, capabilities."""

KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]
ModelVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$")]
ModelId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,79}"
        r"@[A-Za-z0-9][A-Za-z0-9._+-]{0,39}$"
    ),
]
"""``<lab_id>/<model name>@<model version>``: the key of the access topics."""

PolicyVersion = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2, upper case."""

Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A CloudEvent ``id`` (same limits as the envelope)."""

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""The canonical text of a UUID (RFC 9562): lowercase hex digits, hyphenated 8-4-4-4-12."""


def _canonical_uuid_schema(source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # From JSON only the canonical text, checked before it becomes a UUID: UUID
    # parsing would accept and rewrite upper case, missing hyphens, braces or a
    # urn: prefix, and the sender could not match the answer to the id it sent.
    # Python callers pass UUID objects (or any UUID text their own code made).
    text = core_schema.custom_error_schema(
        core_schema.chain_schema(
            [core_schema.str_schema(pattern=UUID_PATTERN), core_schema.uuid_schema()]
        ),
        custom_error_type="uuid_not_canonical",
        custom_error_message="Input should be a UUID in canonical form: "
        "lowercase hex digits, hyphenated 8-4-4-4-12",
    )
    return core_schema.json_or_python_schema(
        json_schema=text, python_schema=core_schema.uuid_schema()
    )


CanonicalUuid = Annotated[
    UUID,
    GetPydanticSchema(_canonical_uuid_schema),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
"""A UUID in external input: on the wire exactly as ``str(uuid)`` writes it, or refused."""

Base64Ed25519Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]
"""64 signature bytes in standard base64 (RFC 4648 section 4) with padding: 88 characters."""


def make_model_id(lab_id: str, name: str, version: str) -> str:
    """The model id intake assigns on acceptance: ``<lab_id>/<name>@<version>``."""
    return f"{lab_id}/{name}@{version}"


# --- vocabularies --------------------------------------------------------------


class RiskDomain(StrEnum):
    """National-security risk domains the agency evaluates."""

    CYBER = "cyber"
    BIO = "bio"
    CHEM = "chem"
    NUCLEAR = "nuclear"
    AUTONOMY = "autonomy"


class RiskLevel(StrEnum):
    """Ordered risk levels; compare with ``rank``, not with ``<`` (that is string order)."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(RiskLevel).index(self)


class EvaluationMethod(StrEnum):
    AUTOMATED = "automated"
    MANUAL = "manual"


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


class DeploymentChannel(StrEnum):
    API = "api"
    CONSUMER_APP = "consumer_app"
    ENTERPRISE = "enterprise"
    CLOUD_MARKETPLACE = "cloud_marketplace"
    OPEN_WEIGHTS = "open_weights"
    INTERNAL = "internal"


class ContactRole(StrEnum):
    PRIMARY = "primary"
    TECHNICAL = "technical"
    SECURITY = "security"
    LEGAL = "legal"


class RejectionReason(StrEnum):
    """Why an input was refused. The decode reasons of ``ContractViolation``
    (malformed_json, invalid_envelope, unknown_event_type, schema_violation; see
    contracts.violation) are members too, so ``RejectionReason(violation.reason)``
    works."""

    UNKNOWN_LAB = "unknown_lab"
    UNKNOWN_EVALUATOR = "unknown_evaluator"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_ISSUED_AT = "stale_issued_at"
    FUTURE_ISSUED_AT = "future_issued_at"
    REPLAYED_NONCE = "replayed_nonce"
    MALFORMED = "malformed"
    MALFORMED_JSON = "malformed_json"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    SCHEMA_VIOLATION = "schema_violation"
    SUBJECT_MISMATCH = "subject_mismatch"
    OVERSIZED = "oversized"
    ENDPOINT_NOT_HTTPS = "endpoint_not_https"
    NOT_COVERED_MODEL = "not_covered_model"
    CONFLICT = "conflict"
    UNKNOWN_SUBMISSION = "unknown_submission"
    NOT_OWNER = "not_owner"
    CREDENTIAL_NOT_OWNED = "credential_not_owned"
    INVALID_STATE = "invalid_state"
    UNKNOWN_POLICY = "unknown_policy"
    POLICY_MISMATCH = "policy_mismatch"
    AUTHENTICATION_FAILED = "authentication_failed"
    """The only answer an unauthenticated sender gets for a refusal that would tell who is
    registered (unknown sender or key, revoked or expired key, bad signature, stale, future
    or replayed signature, or any refusal about existing state); the precise reason is kept
    for the operator and for the registered sender's own view."""
    UNKNOWN_PRINCIPAL = "unknown_principal"
    """The claimed sender (of a kind without its own code, e.g. a reviewer) is not registered."""
    ENDPOINT_NOT_ALLOWED = "endpoint_not_allowed"
    """The evaluation endpoint is not a public https host: it resolves to a loopback,
    private, link-local (cloud metadata), shared, multicast or reserved address, carries
    credentials, or does not resolve; only operator-allowlisted host:port pairs are exempt."""
    IMPLAUSIBLE_ENFORCED_AT = "implausible_enforced_at"
    UNKNOWN_COUNTRY_GROUP = "unknown_country_group"
    INVALID_POLICY = "invalid_policy"
    # reviewer decisions (risk)
    UNKNOWN_REVIEWER = "unknown_reviewer"
    UNKNOWN_ESCALATION = "unknown_escalation"
    ESCALATION_MISMATCH = "escalation_mismatch"  # names another submission than the escalation's
    ALREADY_SIGNED = "already_signed"  # this reviewer already signed this question
    ESCALATION_CONCLUDED = "escalation_concluded"
    ESCALATION_SUPERSEDED = "escalation_superseded"
    NO_INTERIM_ORDER = "no_interim_order"  # lift_interim, but no interim order is in force
    ORDER_OUTDATED = "order_outdated"  # the order's compliance deadline or expiry has passed
    NOT_ASSIGNED = "not_assigned"
    """The (authenticated) external evaluator is not assigned to the submission it reports
    on; an operator assigns evaluators to submissions."""


# --- building blocks -----------------------------------------------------------


class Part(BaseModel):
    """Base of nested (non-event) models: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Signature(Part):
    """An Ed25519 signature over an event's ``data``.

    Signed bytes: the RFC 8785 (JCS) canonical JSON of the ``data`` object as it
    is sent, with ``signature.value`` removed and everything else kept (so
    ``key_id``, ``algorithm``, ``issued_at`` and ``nonce`` are signed too and
    cannot be swapped to replay a captured event). See ``signing_input``.
    """

    key_id: KeyId = Field(
        description="Id of the registered public key that verifies the value.",
        json_schema_extra=OWNER,
    )
    algorithm: Literal["ed25519"] = Field(
        description="Signature algorithm; only Ed25519.", json_schema_extra=OWNER
    )
    issued_at: AwareDatetime = Field(
        description="When the signer signed; the verifier refuses it outside its clock skew.",
        json_schema_extra=OWNER,
    )
    nonce: str = Field(
        min_length=16,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Random base64url string (>= 96 bits), never reused with the same key.",
        json_schema_extra=OWNER,
    )
    value: Base64Ed25519Signature = Field(
        description="The 64-byte Ed25519 signature, standard base64 with padding.",
        json_schema_extra=OWNER,
    )


def signing_input(data: dict[str, Any]) -> bytes:
    """The bytes an Ed25519 signature covers, from the JSON ``data`` object.

    ``data`` is the object exactly as it travels (parsed JSON, not a re-dumped
    model); the ``value`` member of its ``signature`` is removed, the rest is
    canonicalised with RFC 8785.
    """
    import rfc8785  # local: only producers and verifiers of signed events need it

    body = dict(data)
    signature = body.get("signature")
    if isinstance(signature, dict):
        body["signature"] = {k: v for k, v in signature.items() if k != "value"}
    return bytes(rfc8785.dumps(body))


class SignedEvent(Event):
    """An event whose ``data`` carries an Ed25519 ``signature`` (see ``Signature``)."""

    signature: Signature

    def signing_bytes(self) -> bytes:
        """What the signer signs, as ``encode`` will send it (None fields omitted)."""
        return signing_input(self.model_dump(mode="json", exclude_none=True))


class ModelInfo(Part):
    """The model under review, as the lab declared it."""

    name: ModelName = Field(
        description="Model name (letters, digits, '.', '_', '-').", json_schema_extra=PUBLIC
    )
    version: ModelVersion = Field(
        description="Model version or snapshot id.", json_schema_extra=PUBLIC
    )
    family: ShortText = Field(description="Model family / product line.", json_schema_extra=PUBLIC)
    modalities: list[Modality] = Field(
        min_length=1, max_length=8, description="Input/output modalities.", json_schema_extra=PUBLIC
    )
    training_compute_flop: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="Total training compute in floating-point operations (e.g. 3e26).",
        json_schema_extra=OWNER,
    )
    planned_release_date: date = Field(
        description="Planned public release date (ISO 8601 date).", json_schema_extra=OWNER
    )
    deployment_channels: list[DeploymentChannel] = Field(
        min_length=1,
        max_length=16,
        description="How the model will be made available.",
        json_schema_extra=OWNER,
    )
    declared_capabilities: list[Slug] = Field(
        default_factory=list,
        max_length=64,
        description="Capabilities the lab declares (slugs; compared with the coverage criteria).",
        json_schema_extra=OWNER,
    )


class EvaluationAccess(Part):
    """How the agency reaches the model: never the secret itself."""

    endpoint: HttpUrl = Field(
        description="Base URL of the OpenAI-compatible API (https outside local development).",
        json_schema_extra=RESTRICTED,
    )
    api_model: ShortText = Field(
        description="Value of the `model` parameter in API calls to the endpoint.",
        json_schema_extra=RESTRICTED,
    )
    credential_ref: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$",
        description="Name of the API credential in the agency's secret store, "
        "delivered out of band; the secret itself never travels in events. It must lie "
        "under labs/<lab_id>/ of the submitting lab (no '.' or '..' segments): intake "
        "refuses any other name as credential_not_owned.",
        json_schema_extra=RESTRICTED,
    )


class FieldError(Part):
    path: str = Field(
        max_length=500,
        description="Dotted path of the failing field, e.g. data.model.name.",
        json_schema_extra=OWNER,
    )
    message: str = Field(
        max_length=1000, description="What is wrong with it.", json_schema_extra=OWNER
    )


def field_errors(violation: ContractViolation) -> list[FieldError]:
    """``ContractViolation.errors`` ("path: message" strings) as FieldError objects."""
    result = []
    for error in violation.errors:
        path, _, message = error.partition(": ")
        result.append(FieldError(path=path[:500], message=message[:1000]))
    return result


class Rejection(Event):
    """Shape shared by the rejection events (the sender's answer to a refused input)."""

    reason: RejectionReason = Field(
        description="Stable machine-readable reason code.", json_schema_extra=OWNER
    )
    detail: Text = Field(
        description="Human-readable explanation of the rejection.", json_schema_extra=OWNER
    )
    field_errors: list[FieldError] = Field(
        default_factory=list,
        max_length=100,
        description="Failing field paths with messages (schema_violation, malformed).",
        json_schema_extra=OWNER,
    )
    rejected_event_id: EventId | None = Field(
        default=None,
        description="CloudEvent id of the refused input, when it could be read.",
        json_schema_extra=OWNER,
    )
    rejected_at: AwareDatetime = Field(
        description="When the input was refused.", json_schema_extra=OWNER
    )
