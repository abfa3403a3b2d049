"""CloudEvents 1.0 envelope, Kafka *structured* mode.

Every record value is one JSON CloudEvent (content type
``application/cloudevents+json``); the record key is the event's ``subject``
(submission id, or model id on access topics). Structured mode keeps an event
self-describing when it is copied to a dead-letter topic, an archive or a
government feed, where Kafka headers are easily lost. The W3C ``traceparent``
travels both in the envelope (CloudEvents distributed-tracing extension: the
trace the event was born in) and in the Kafka headers (the current hop).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.parsing import dotted, parse_json, screen
from contracts.violation import (
    INVALID_ENVELOPE,
    MALFORMED_JSON,
    MAX_ERRORS,
    SCHEMA_VIOLATION,
    UNKNOWN_EVENT_TYPE,
    printable,
)
from contracts.violation import ContractViolation as ContractViolation

CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_URN = "urn:frontier-review:schema:"


class Event(BaseModel):
    """Base of every event payload (the CloudEvent ``data``).

    ``TYPE`` is the CloudEvent ``type`` that names the payload on the wire;
    consumers ignore unknown fields so producers may add optional ones.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    EXTERNAL: ClassVar[bool] = False
    """Written outside the agency (labs, evaluators, reviewers): ``decode`` reads
    it strictly. Set on the model, so strictness cannot be forgotten by a caller."""

    @classmethod
    def dataschema(cls) -> str:
        return f"{SCHEMA_URN}{cls.TYPE}:v{cls.SCHEMA_VERSION}"


D = TypeVar("D", bound=Event)

# Text without C0/C1 control characters (Unicode category Cc).
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"


class CloudEventAttributes(BaseModel):
    """The envelope without its data: validated before the data is looked at."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    # No control characters in what answers and logs repeat (an id with a newline or an
    # ESC forges log lines and terminal output): the trust library could not name such
    # an id in an answer, so the envelope refuses it rather than answering it unnamed.
    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL,
        description="Unique per event; the inbox key.",
    )
    source: str = Field(
        min_length=1,
        max_length=500,
        pattern=NO_CONTROL,
        description="URI-reference of the producer.",
    )
    type: str = Field(
        min_length=1, max_length=200, pattern=NO_CONTROL, description="Names the payload model."
    )
    subject: str = Field(
        min_length=1,
        max_length=200,
        pattern=NO_CONTROL,
        description="Submission id, or model id on access topics.",
    )
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    traceparent: str | None = Field(
        default=None, max_length=512, description="W3C trace context where the event was born."
    )


class CloudEvent(CloudEventAttributes, Generic[D]):
    data: D


def make_event(
    data: D,
    *,
    source: str,
    subject: str,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent[D]:
    return envelope_for(type(data))(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=data.TYPE,
        subject=subject,
        time=time or datetime.now(UTC),
        dataschema=data.dataschema(),
        traceparent=traceparent,
        data=data,
    )


def encode(event: CloudEvent[Any]) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


@cache
def envelope_for(model: type[D]) -> type[CloudEvent[D]]:
    """``CloudEvent[model]``, looked up once (pydantic's own lookup costs microseconds)."""
    return CloudEvent[model]  # type: ignore[valid-type]


def decode(
    raw: bytes, event_types: Mapping[str, type[Event]], *, external: bool = False
) -> CloudEvent[Event]:
    """Parse one structured-mode record value into a typed CloudEvent.

    Raises ContractViolation, and nothing else, whatever the bytes: reason
    ``malformed_json``, ``invalid_envelope``, ``unknown_event_type`` or
    ``schema_violation`` (see contracts.violation), the first that applies.

    External input (``external=True``, or any of ``event_types`` marked
    ``EXTERNAL``: so a caller that forgets the flag cannot make lab input lax)
    is read by ``parse_json(raw, external=True)`` first and validated in
    pydantic's strict mode: a JSON value the committed schema calls invalid is
    refused rather than coerced (``"30"`` is not an integer, ``true`` is not 1).
    Internal records, written by the agency's own services, are validated in
    lax mode straight from the bytes; ``screen`` gives them the same refusals
    of unreadable JSON and unstorable strings.
    """
    strict = external or any(event_type.EXTERNAL for event_type in event_types.values())
    model: type[Event] | None = None
    if strict:
        document = parse_json(raw, external=True)
        if not isinstance(document, dict):
            raise ContractViolation(INVALID_ENVELOPE, NOT_AN_OBJECT)
        declared = document.get("type")
        model = event_types.get(declared) if isinstance(declared, str) else None
    else:
        screen(raw)
    if model is None:  # read the envelope first: a broken one is reported as such
        attributes = _validate(CloudEventAttributes, raw, strict)
        model = event_types.get(attributes.type)
        if model is None:
            raise ContractViolation(
                UNKNOWN_EVENT_TYPE, f"{printable(attributes.type)!r} does not travel on this topic"
            )
    return _validate(envelope_for(model), raw, strict)


NOT_AN_OBJECT = "a CloudEvent must be a JSON object"

M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], raw: bytes, strict: bool) -> M:
    try:
        return model.model_validate_json(raw, strict=strict)
    except ValidationError as exc:
        raise _violation(exc) from None


def _violation(error: ValidationError) -> ContractViolation:
    """The reason of pydantic's errors: the envelope's before the data's."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":  # then it is the only one
        return ContractViolation(MALFORMED_JSON, first["msg"])
    if not first["loc"] and first["type"] == "model_type":
        return ContractViolation(INVALID_ENVELOPE, NOT_AN_OBJECT)
    envelope = [e for e in errors if not e["loc"] or e["loc"][0] != "data"]
    reason = INVALID_ENVELOPE if envelope else SCHEMA_VIOLATION
    reported = (envelope or errors)[:MAX_ERRORS]  # e.g. 100,000 unknown members: 100 named
    return ContractViolation.at(reason, [(dotted(e["loc"]), e["msg"]) for e in reported])
