"""Field sensitivity labels and the redaction that the government feed relies on.

Every event field has a label, written as ``json_schema_extra`` so that it also
appears in the generated JSON Schema as ``"x-sensitivity"``:

- ``public``: may leave the agency in the redacted findings feed (gov.findings);
- ``owner``: may go to the party the event answers or concerns, on its own feed
  (a lab's ``labs.<id>.answers``: why its input was refused, its window's
  deadline, its model's policy), and nowhere else outside the agency;
- ``internal``: stays inside the agency's services (the default: a field without
  a label is internal, so a forgotten label fails closed);
- ``restricted``: need-to-know even inside the agency (model endpoints,
  credential references, contacts, evidence, free-text findings, exemptions).
  On an owner's own feed, a restricted field is the owner's own data (its
  endpoint, its customers' exemptions): ``OWNER_FEED`` keeps it.

``redact(instance, allowed)`` keeps only the fields whose label is allowed,
recursing into nested models, lists and dicts; ``owner_copy(event)`` is the
event as its owner's feed carries it.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, JsonValue
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

LABEL_KEY = "x-sensitivity"
JsonDict = dict[str, JsonValue]  # pydantic's type of json_schema_extra


class Sensitivity(StrEnum):
    PUBLIC = "public"
    OWNER = "owner"
    INTERNAL = "internal"
    RESTRICTED = "restricted"


DEFAULT_SENSITIVITY = Sensitivity.INTERNAL

# Use as Field(..., json_schema_extra=PUBLIC). pydantic copies these into the
# schema; never mutate them.
PUBLIC: JsonDict = {LABEL_KEY: Sensitivity.PUBLIC.value}
OWNER: JsonDict = {LABEL_KEY: Sensitivity.OWNER.value}
INTERNAL: JsonDict = {LABEL_KEY: Sensitivity.INTERNAL.value}
RESTRICTED: JsonDict = {LABEL_KEY: Sensitivity.RESTRICTED.value}


def label_of(field: FieldInfo) -> Sensitivity:
    """The field's label; unlabeled fields are ``internal``."""
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        label = extra.get(LABEL_KEY)
        if isinstance(label, str):
            return Sensitivity(label)
    return DEFAULT_SENSITIVITY


def labels(model: type[BaseModel]) -> dict[str, Sensitivity]:
    """Field name -> label for one model class (not recursive)."""
    return {name: label_of(field) for name, field in model.model_fields.items()}


def redact(
    instance: BaseModel, allowed: AbstractSet[str] = frozenset({Sensitivity.PUBLIC})
) -> dict[str, Any]:
    """The instance as a JSON-compatible dict without the fields whose label is not allowed.

    Nested models are redacted by their own labels (inside lists and dict values
    too); a nested model is only reached when its parent field is allowed.
    """
    allowed_labels = {Sensitivity(label) for label in allowed}
    return {
        name: _redact_value(getattr(instance, name), allowed_labels)
        for name, field in type(instance).model_fields.items()
        if label_of(field) in allowed_labels
    }


def _redact_value(value: Any, allowed: set[Sensitivity]) -> Any:
    if isinstance(value, BaseModel):
        return redact(value, allowed)
    if isinstance(value, list | tuple):
        return [_redact_value(item, allowed) for item in value]
    if isinstance(value, dict):
        return {str(key): _redact_value(item, allowed) for key, item in value.items()}
    return to_jsonable_python(value)


OWNER_FEED = frozenset({Sensitivity.PUBLIC, Sensitivity.OWNER, Sensitivity.RESTRICTED})
"""What an owner's own feed carries: everything but the agency-internal fields."""

M = TypeVar("M", bound=BaseModel)


def owner_copy(instance: M) -> M:
    """``instance`` as its owner's feed carries it: its internal fields dropped (and so
    defaulted), validated again as the same model, so a lab decodes it with the contract.
    A required field labelled internal on such an event is a contract error, caught here
    (and by the contract tests for every feed's events)."""
    return type(instance).model_validate(redact(instance, OWNER_FEED))
