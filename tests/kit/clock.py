"""A clock tests move forward: the services' injected ``Clock``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class MovableClock:
    """Real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
