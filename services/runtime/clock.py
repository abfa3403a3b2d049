"""Time, injected: handlers, decisions and timers read it from a ``Clock``.

Production uses the system clock; tests pass one they can move, so a 30-day
review window or a decision deadline passes in seconds without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()
