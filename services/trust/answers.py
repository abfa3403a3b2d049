"""How often the agency answers input that may not speak for itself.

A refusal of input that did not authenticate (or that is about another
principal's record) is not kept one by one: it is counted per claimed sender,
hour and reason (``trust_refusal_counts``), and answered only while the claimed
sender's count this hour is within ``AnswerLimit.per_hour``. A flood of junk
claiming one lab costs one counter row per reason and hour, and at most
``per_hour`` answers on that lab's feed; beyond it the refusals are counted and
logged once, not answered. The claimed sender is whatever the input says, so the
limit also caps what a forger can make the agency say to a genuine lab.

Intake (``FR_INTAKE_REFUSALS_ANSWERED_PER_HOUR``) and access
(``FR_ACCESS_REFUSALS_ANSWERED_PER_HOUR``) use it; ``RefusalCountPurge`` forgets
hours past a service's retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.trust import repository

if TYPE_CHECKING:
    from services.runtime.database import Connection, Pool

log = logging.getLogger(__name__)

NO_SENDER = "-"  # the count of input that names no readable sender


@dataclass(frozen=True)
class AnswerLimit:
    """``await limit.answer(conn, ...)``: count a refusal; True if it is to be answered."""

    per_hour: int

    async def answer(
        self,
        conn: Connection,
        *,
        source: str | None,
        reason: str,
        at: datetime,
        event_id: str | None,
    ) -> bool:
        """Count the refusal of input claiming ``source`` (in the caller's transaction)
        and say whether it is still within this hour's answers for that sender."""
        count = await repository.count_refusal(
            conn, source=source or NO_SENDER, reason=reason, at=at, event_id=event_id
        )
        if count <= self.per_hour:
            return True
        if count == self.per_hour + 1:
            log.warning(
                "more than %d refusals this hour claiming %r: no more answers",
                self.per_hour,
                source,
            )
        return False


@dataclass
class RefusalCountPurge:
    """``service.background(RefusalCountPurge(lambda: service.pool, clock.now, keep))``:
    deletes the counts of hours older than ``keep``, at start and every ``interval_s``."""

    pool: Callable[[], Pool]
    now: Callable[[], datetime]
    keep: timedelta
    interval_s: float = 3600.0

    async def purge_once(self) -> int:
        async with self.pool().acquire() as conn:
            return await repository.purge_refusal_counts(conn, self.now() - self.keep)

    async def __call__(self) -> None:
        while True:
            await self.purge_once()
            await asyncio.sleep(self.interval_s)
