"""Background upkeep of the service's tables (a background job of the service process;
the trust library will own the nonce store and its purge).

Nonces of accepted external-finding signatures are needed only while a replay of
that signature could still pass the freshness check: ``issued_at`` may lie up to
``signature_max_future_s`` after the nonce was seen, and stays acceptable for
``signature_max_age_s`` after that. Older nonces are purged; a replay of their
signature is then refused as ``stale_issued_at`` instead of ``replayed_nonce``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from services.evaluation import repository as repo
from services.evaluation.settings import EvaluationSettings

if TYPE_CHECKING:
    from services.runtime import Clock
    from services.runtime.database import Pool

log = logging.getLogger(__name__)


def nonce_retention(settings: EvaluationSettings) -> timedelta:
    return timedelta(
        seconds=settings.evaluation_signature_max_age_s + settings.evaluation_signature_max_future_s
    )


class NoncePurger:
    def __init__(
        self, pool: Callable[[], Pool], settings: EvaluationSettings, clock: Clock
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock

    async def purge_once(self) -> int:
        cutoff = self.clock.now() - nonce_retention(self.settings)
        async with self.pool().acquire() as conn:
            purged = await repo.purge_nonces(conn, seen_before=cutoff)
        if purged:
            log.info("purged %d signature nonces seen before %s", purged, cutoff.isoformat())
        return purged

    async def run(self) -> None:
        while True:
            await self.purge_once()
            await asyncio.sleep(self.settings.evaluation_nonce_purge_interval_s)
