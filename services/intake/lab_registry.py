"""Intake's lab registry, announced: every change of a lab's entry goes to intake.registry.

The registry commands (``frontier-review labs ...``, the trust library's
``principal_commands``) call ``publish_entry`` in the transaction of the change,
so the lab's whole entry (a ``LabRegistryChanged`` under its next version) is an
outbox row of that transaction: it is published by the running intake's relay
if and only if the change committed. Access applies it to the keys it verifies
compliance acknowledgements with (services/trust/replica.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from services.runtime import outbox
from services.runtime.clock import SYSTEM_CLOCK, Clock
from services.trust.replica import lab_snapshot, registry_event_id

if TYPE_CHECKING:
    from services.runtime.database import Connection
    from services.runtime.settings import RuntimeSettings


async def publish_entry(
    conn: Connection,
    lab_id: str,
    changed_at: datetime,
    *,
    settings: RuntimeSettings,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Queue the lab's entry as it is now in this transaction; returns its version."""
    snapshot = await lab_snapshot(conn, lab_id, changed_at)
    async with outbox.publishing(conn, settings, clock) as ctx:
        ctx.publish(snapshot, event_id=registry_event_id(lab_id, snapshot.version))
    return snapshot.version
