"""``ContractViolation``: bytes that are not a valid event of the expected topic.

Its reasons are stable codes a sender is told (they are ``RejectionReason``
members too), chosen by *where* the input first fails:

- ``malformed_json``: not JSON text the agency reads (not UTF-8, a byte order
  mark, a syntax error, NaN/Infinity, an integer beyond the digit limit,
  nesting beyond the depth limit, a duplicate member name in external input);
- ``invalid_envelope``: JSON, but not a valid CloudEvent (the root is not an
  object, an envelope attribute is missing or wrong, or holds a string
  PostgreSQL cannot store);
- ``unknown_event_type``: a valid CloudEvent whose ``type`` does not travel on
  the topic;
- ``schema_violation``: the ``data`` does not match its event's contract
  (including a string PostgreSQL cannot store anywhere under ``data``).
"""

from __future__ import annotations

import json
import re

MALFORMED_JSON = "malformed_json"
INVALID_ENVELOPE = "invalid_envelope"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
SCHEMA_VIOLATION = "schema_violation"

DECODE_REASONS = (MALFORMED_JSON, INVALID_ENVELOPE, UNKNOWN_EVENT_TYPE, SCHEMA_VIOLATION)

# What a violation reports is bounded and storable, because it goes back to the
# sender (Rejection.detail, FieldError) and into the database: at most as many
# field errors as a Rejection carries, each path and message within FieldError's
# limits, and never a character PostgreSQL refuses.
MAX_ERRORS = 100
MAX_PATH_CHARS = 500
MAX_MESSAGE_CHARS = 1000
MAX_DETAIL_CHARS = 2000

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text`` in a ``text`` or ``jsonb`` column.

    It refuses U+0000 (NUL) and, being UTF-8, any lone surrogate
    (U+D800..U+DFFF), which Python strings can hold but UTF-8 cannot encode.
    """
    return _UNSTORABLE.search(text) is None


def printable(text: str, limit: int = MAX_PATH_CHARS) -> str:
    """``text`` safe to report: unstorable characters escaped, at most ``limit`` characters."""
    if not storable(text):
        text = _UNSTORABLE.sub(lambda m: json.dumps(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ContractViolation(ValueError):
    """Bytes that are not a valid event of the expected topic.

    ``reason`` is a stable machine-readable code (see the module doc);
    ``errors`` lists the failing field paths as ``"path: message"`` strings, so
    a sender can be told exactly what to fix. Both are bounded and storable.
    """

    def __init__(self, reason: str, detail: str, errors: list[str] | None = None) -> None:
        detail = printable(detail, MAX_DETAIL_CHARS)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.errors = [
            printable(error, MAX_PATH_CHARS + 2 + MAX_MESSAGE_CHARS)
            for error in (errors or [])[:MAX_ERRORS]
        ]

    @classmethod
    def at(cls, reason: str, problems: list[tuple[str, str]]) -> ContractViolation:
        """A violation listing ``(path, message)`` problems, the detail naming them all."""
        errors = [
            f"{printable(path)}: {printable(message, MAX_MESSAGE_CHARS)}"
            for path, message in problems[:MAX_ERRORS]
        ]
        return cls(reason, "; ".join(errors), errors)
