"""The nonce purge: a background job every service that verifies signatures runs.

A spent nonce is kept for ``FreshnessPolicy.nonce_retention`` after its
``issued_at`` (the derivation is in ``freshness``): until then a copy of its
record could still be accepted, after it any copy is refused as stale or
dead-lettered. The purge deletes in bounded batches, each its own short
transaction, so it never holds locks on many rows at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.trust import repository
from services.trust.freshness import FreshnessPolicy

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)


@dataclass
class NoncePurge:
    """``service.background(NoncePurge(lambda: service.pool, clock.now, policy))``."""

    pool: Callable[[], Pool]
    now: Callable[[], datetime]
    policy: FreshnessPolicy
    interval_s: float = 3600.0
    batch: int = 10_000

    async def purge_once(self) -> int:
        """Delete every nonce past its retention; returns how many."""
        cutoff = self.now() - self.policy.nonce_retention
        purged = 0
        while True:
            async with self.pool().acquire() as conn:
                deleted = await repository.purge_nonces(conn, cutoff, self.batch)
            purged += deleted
            if deleted < self.batch:
                break
        if purged:
            log.info("purged %d nonces issued before %s", purged, cutoff.isoformat())
        return purged

    async def __call__(self) -> None:
        while True:
            await self.purge_once()
            await asyncio.sleep(self.interval_s)
