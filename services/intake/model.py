"""Intake's state: a submission bound to the body first filed under its id, its
history, the window that closes, and the status the CLI and HTTP endpoint show.
Plain values; repository.py returns them, decisions.py decides on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class SubmissionState(StrEnum):
    ACCEPTED = "accepted"  # review window open
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"  # review window closed at its deadline


class HistoryKind(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    WITHDRAWN = "withdrawn"
    WITHDRAWAL_REJECTED = "withdrawal_rejected"
    WINDOW_CLOSED = "window_closed"


@dataclass(frozen=True)
class FiledSubmission:
    """A submission id bound to one body: the first filing intake decided on its content."""

    submission_id: UUID
    lab_id: str
    state: SubmissionState
    body_sha256: str
    filed_event_id: str
    model_id: str | None
    deadline: datetime | None
    reason: str
    detail: str


@dataclass(frozen=True)
class ClosedWindow:
    submission_id: UUID
    lab_id: str
    model_id: str
    deadline: datetime


# --- what the status CLI and HTTP endpoint show --------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    kind: str
    event_id: str | None
    reason: str | None
    detail: str


@dataclass(frozen=True)
class SubmissionStatus:
    submission_id: UUID
    state: str
    lab_id: str | None = None
    model_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    criteria_version: str | None = None
    review_days: int | None = None
    received_at: datetime | None = None
    deadline: datetime | None = None
    withdrawn_at: datetime | None = None
    closed_at: datetime | None = None
    filed_event_id: str | None = None
    body_sha256: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, UUID):
                return str(value)
            if isinstance(value, list):
                return [plain(item) for item in value]
            if isinstance(value, dict):
                return {key: plain(item) for key, item in value.items()}
            return value

        result: dict[str, Any] = plain(asdict(self))
        return result
