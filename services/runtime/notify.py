"""Waiting for work: a PostgreSQL ``LISTEN`` channel, with a poll as the safety net.

Writers ``NOTIFY`` at commit (triggers on the outbox, the timers and the job
queue), so a waiter wakes at once; the poll interval bounds the wait when a
notification is lost (e.g. the listening connection died with a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self, *_: Any) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Until woken or ``seconds`` passed; True when woken."""
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


@contextlib.asynccontextmanager
async def listening(
    pool: Pool, channel: str, wakeup: Wakeup | None = None
) -> AsyncIterator[Wakeup]:
    """A ``Wakeup`` set by every NOTIFY on ``channel`` while the block runs."""
    wakeup = wakeup or Wakeup()
    conn = await pool.acquire()
    try:
        await conn.add_listener(channel, wakeup.set)
        yield wakeup
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone (restart)
            await conn.remove_listener(channel, wakeup.set)
        with contextlib.suppress(Exception):
            await pool.release(conn)
