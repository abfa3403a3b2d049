"""Errors a handler raises to say what retrying can't fix."""

from __future__ import annotations


class PermanentError(Exception):
    """Raised by a handler when retrying can't help: dead-letter the record at once."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
