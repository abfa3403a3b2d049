"""The body digest: SHA-256 of the RFC 8785 form of the data as received, without its signature.

It tells a re-send of the same content (new signature, same body) from a
different body under the same id (intake's ``body_sha256``, evaluation's
``content_sha256``). RFC 8785 works on I-JSON: it refuses integers beyond
+-(2**53 - 1) and non-finite numbers, and so does the signature rule, so such a
body can be neither digested nor verified; it is refused as a schema violation
that names the member.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from contracts.events.common import RejectionReason
from services.trust.refusal import Refusal, field_error

# What rfc8785 raises for input it cannot canonicalise: its CanonicalizationError
# subclasses, and UnicodeEncodeError for a lone surrogate in a member name (JSON
# escapes can spell one). All of them are ValueErrors.
CANONICALISATION_ERRORS = (ValueError,)


def body_digest(data: Mapping[str, Any]) -> str | Refusal:
    """Hex SHA-256 of the canonical data without ``signature``, or a schema violation."""
    body = {key: value for key, value in data.items() if key != "signature"}
    try:
        return hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    except CANONICALISATION_ERRORS as exc:
        path = uncanonical_path(body, "data")
        hint = (
            "; JSON integers must stay within +-(2**53 - 1): write large numbers with an "
            "exponent, e.g. 3.2e+26"
            if isinstance(exc, rfc8785.IntegerDomainError)
            else ""
        )
        return Refusal(
            RejectionReason.SCHEMA_VIOLATION,
            f"the data cannot be canonicalised (RFC 8785), so it can be neither digested nor "
            f"its signature checked: {path}: {exc}{hint}",
            (field_error(path, str(exc)),),
        )


def uncanonical_path(value: Any, path: str) -> str:
    """The dotted path of the innermost member that RFC 8785 refuses to canonicalise."""
    if isinstance(value, dict):
        members: list[tuple[Any, Any, Any]] = [(k, v, {k: v}) for k, v in value.items()]
    elif isinstance(value, list):
        members = [(i, v, v) for i, v in enumerate(value)]
    else:
        return path
    for key, member, probe in members:  # a dict's probe includes the member's name
        try:
            rfc8785.dumps(probe)
        except CANONICALISATION_ERRORS:
            return uncanonical_path(member, f"{path}.{key}")
    return path
