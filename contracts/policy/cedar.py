"""The Cedar vocabulary both sides share: schema, actions, annotations, literals.

The agency compiles restriction orders into Cedar policies over this schema
(services/access) and validates them against it before publishing; enforcers
(services/labclient) validate again on receipt and build the request entities
from it (``contracts.policy.entities``). The schema is data, versioned by
``SCHEMA_VERSION``: a change that an old enforcer could misread gets a new
version, and the enforcer refuses a policy whose version it does not know.

Entities and context (no namespace):

- ``Principal`` (member of its ``Organisation``): ``nationalities_any``,
  ``nationalities_most_recent``, ``residences`` (residence and permanent
  residencies), ``us_person``, ``verification_status`` (effective at the
  decision time), ``organisation_countries`` (headquarters and ultimate parent)
  and ``unknown`` (names of the attributes the lab does not know, see
  ``principal.Attribute``);
- ``Organisation``: no attributes; ``principal in Organisation::"id"`` tests
  membership (organisation criteria and exemptions);
- ``Model``: the resource, id = the model id;
- actions ``invoke``, ``fine_tune``, ``download_weights`` on a Model;
- context: ``now`` (datetime: the decision time, compared with each order's
  window), ``location_country`` and ``unknown`` (request attributes not known).
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from typing import Any

import cedarpy

SCHEMA_VERSION = "fr-access-1"

PRINCIPAL = "Principal"
ORGANISATION = "Organisation"
MODEL = "Model"
ACTION = "Action"


class Action(StrEnum):
    """What a principal does with a model."""

    INVOKE = "invoke"
    FINE_TUNE = "fine_tune"
    DOWNLOAD_WEIGHTS = "download_weights"


# Annotation keys every compiled policy carries. Cedar reports only positional
# policy ids; enforcers map them to these annotations (read from the text).
ID = "id"  # stable policy id, e.g. "order:<uuid>:nationality"
ORDER_ID = "order_id"  # the restriction order (absent on the baseline permit)
CRITERION = "criterion"  # the scope criterion, e.g. "nationality"
KIND = "kind"  # "baseline", "match" or "unknown" (a fail-closed policy)
REASON = "reason"  # human-readable reason naming the order
NEEDS = "needs"  # comma-separated attribute names whose absence the policy denies for
EFFECTIVE_AT = "effective_at"  # ISO 8601, the order's window (also in the condition)
EXPIRES_AT = "expires_at"

ANNOTATIONS = (ID, ORDER_ID, CRITERION, KIND, REASON, NEEDS, EFFECTIVE_AT, EXPIRES_AT)


def _string_set() -> dict[str, Any]:
    return {"type": "Set", "element": {"type": "String"}}


CONTEXT: dict[str, Any] = {
    "type": "Record",
    "attributes": {
        "now": {"type": "Extension", "name": "datetime"},
        "location_country": {"type": "String"},
        "unknown": _string_set(),
    },
}

SCHEMA: dict[str, Any] = {
    "": {
        "entityTypes": {
            PRINCIPAL: {
                "memberOfTypes": [ORGANISATION],
                "shape": {
                    "type": "Record",
                    "attributes": {
                        "nationalities_any": _string_set(),
                        "nationalities_most_recent": _string_set(),
                        "residences": _string_set(),
                        "us_person": {"type": "Boolean"},
                        "verification_status": {"type": "String"},
                        "organisation_countries": _string_set(),
                        "unknown": _string_set(),
                    },
                },
            },
            ORGANISATION: {},
            MODEL: {},
        },
        "actions": {
            action.value: {
                "appliesTo": {
                    "principalTypes": [PRINCIPAL],
                    "resourceTypes": [MODEL],
                    "context": CONTEXT,
                }
            }
            for action in Action
        },
    }
}


@cache
def schema() -> cedarpy.Schema:
    """The parsed schema handle (parsed once per process)."""
    return cedarpy.Schema.from_json_str(json.dumps(SCHEMA))


def cedar_string(value: str) -> str:
    """``value`` as a Cedar string literal (quotes included), safe for any input.

    Ids and reasons come from orders (lab-side ids, reviewer text): a quote or
    backslash must never end the literal and inject policy text. Everything
    outside printable ASCII is written as ``\\u{...}``.
    """
    out = ['"']
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    out.append('"')
    return "".join(out)


def entity(type_name: str, entity_id: str) -> str:
    """An entity literal, e.g. ``Principal::"user-42"``."""
    return f"{type_name}::{cedar_string(entity_id)}"
