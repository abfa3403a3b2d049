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

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

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

    @classmethod
    def dataschema(cls) -> str:
        return f"{SCHEMA_URN}{cls.TYPE}:v{cls.SCHEMA_VERSION}"


D = TypeVar("D", bound=Event)


class CloudEventAttributes(BaseModel):
    """The envelope without its data: validated before the data is looked at."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200, description="Unique per event; the inbox key.")
    source: str = Field(min_length=1, max_length=500, description="URI-reference of the producer.")
    type: str = Field(min_length=1, max_length=200, description="Names the payload model.")
    subject: str = Field(
        min_length=1, max_length=200, description="Submission id, or model id on access topics."
    )
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    traceparent: str | None = Field(
        default=None, max_length=512, description="W3C trace context where the event was born."
    )


class CloudEvent(CloudEventAttributes, Generic[D]):
    data: D


class ContractViolation(ValueError):
    """Bytes that are not a valid event of the expected topic.

    ``reason`` is a stable machine-readable code; ``errors`` lists the failing
    field paths, so a sender can be told exactly what to fix.
    """

    def __init__(self, reason: str, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.errors = errors or []


def make_event(
    data: D,
    *,
    source: str,
    subject: str,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent[D]:
    envelope = cast("type[CloudEvent[D]]", CloudEvent[type(data)])  # type: ignore[misc]
    return envelope(
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


def _paths(error: ValidationError, prefix: str) -> list[str]:
    return [
        ".".join([prefix, *(str(part) for part in e["loc"])]).strip(".") + f": {e['msg']}"
        for e in error.errors()
    ]


def decode(raw: bytes, event_types: Mapping[str, type[Event]]) -> CloudEvent[Event]:
    """Parse one structured-mode record value into a typed CloudEvent.

    Raises ContractViolation with reason ``malformed_json``, ``invalid_envelope``,
    ``unknown_event_type`` or ``schema_violation``.
    """
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractViolation("malformed_json", str(exc)) from exc
    except RecursionError as exc:  # e.g. 5000 nested arrays: hostile, not a CloudEvent
        raise ContractViolation("malformed_json", "JSON nested too deeply") from exc
    if not isinstance(document, dict):
        raise ContractViolation("invalid_envelope", "a CloudEvent must be a JSON object")
    try:
        attributes = CloudEventAttributes.model_validate(document)
    except ValidationError as exc:
        paths = _paths(exc, "")
        raise ContractViolation("invalid_envelope", "; ".join(paths), paths) from exc
    model = event_types.get(attributes.type)
    if model is None:
        raise ContractViolation(
            "unknown_event_type", f"{attributes.type!r} does not travel on this topic"
        )
    try:
        data = model.model_validate(document.get("data"))
    except ValidationError as exc:
        paths = _paths(exc, "data")
        raise ContractViolation("schema_violation", "; ".join(paths), paths) from exc
    return CloudEvent[model].model_construct(  # type: ignore[valid-type]
        **dict(attributes), data=data
    )
