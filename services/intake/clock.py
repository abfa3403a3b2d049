"""Time, injectable: every decision and the review-window clock read it from here.

Production uses the system clock and 86 400-second days. Tests pass their own
``Clock`` (or a short ``seconds_per_day``) so a review window lasts seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

MAX_REVIEW_DAYS = 30


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def review_days(requested: int) -> int:
    """The window the agency grants: what the lab asked for, at most 30 days."""
    return min(requested, MAX_REVIEW_DAYS)


def window_length(days: int, seconds_per_day: float) -> timedelta:
    return timedelta(seconds=days * seconds_per_day)
