"""The one "no" of the risk service's decisions: a reason code, a text, failing fields.

The shared ``Refusal`` type is moving into the trust library (services/trust). This is
the same shape as that type (and as intake's today): a ``RejectionReason`` code the
reviewer sees, a human-readable detail, the failing field paths. When the trust library
lands, this module becomes the single line ``from services.trust import Refusal`` and
nothing else in the risk service changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events.common import FieldError, RejectionReason


@dataclass(frozen=True)
class Refusal:
    """Why an input is refused: the reason code, a human text, failing fields."""

    reason: RejectionReason
    detail: str
    field_errors: tuple[FieldError, ...] = ()
