"""Intake's lab registry for a rig: what ``frontier-review labs register`` / ``labs key
add`` do in intake's schema, and intake's relay, which publishes the entries.

Each change runs as the operator's command runs it: the trust library's registry
operation and the lab's whole entry written to intake's outbox
(``services.intake.lab_registry.publish_entry``), in one transaction. The relay
(intake's outbox relay alone: ``Service`` with no consumers) publishes them on
``intake.registry``, where access reads the keys it verifies acknowledgements with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime

from services.intake.app import SCHEMA
from services.intake.lab_registry import publish_entry
from services.intake.settings import IntakeSettings
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from services.trust import registry
from services.trust.principals import LAB, PrincipalKey
from tests.kit.services import drop_schema, isolated


def intake_registry_settings(rig: RuntimeSettings) -> IntakeSettings:
    """Intake's settings beside a rig of another service: its own schema, the rig's topics,
    no HTTP."""
    return isolated(
        rig,
        IntakeSettings,
        "intake",
        topic_prefix=rig.topic_prefix,
        principal_prefix=rig.principal_prefix,
        http_port=None,  # the rig's service serves HTTP, not intake's relay
    )


async def register_lab(
    settings: IntakeSettings,
    lab_id: str,
    keys: Iterable[tuple[str, bytes]],
    at: datetime,
    *,
    name: str | None = None,
) -> None:
    """Register ``lab_id`` (unless it is) and add ``keys`` (key id, raw public key) valid
    from ``at``: each change with its entry on intake's outbox, one transaction each."""
    async with connect(settings, SCHEMA) as conn:
        if not await registry.registered(conn, LAB, lab_id):
            async with conn.transaction():
                refused = await registry.register(conn, LAB, lab_id, name or lab_id, at)
                assert refused is None, refused
                await publish_entry(conn, lab_id, at, settings=settings)
        for key_id, public_key in keys:
            key = PrincipalKey(LAB.name, lab_id, key_id, public_key, at, None, None)
            async with conn.transaction():
                refused = await registry.add_key(conn, LAB, key, at)
                assert refused is None, refused
                await publish_entry(conn, lab_id, at, settings=settings)


@contextlib.asynccontextmanager
async def intake_relay(settings: IntakeSettings) -> AsyncIterator[Service]:
    """Intake's outbox relay, publishing what the registry changes wrote (schema dropped
    after)."""
    async with connect(settings, SCHEMA):
        pass  # migrated, so the registry can be filled before the relay runs
    relay = Service(settings, migrations=SCHEMA)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        await drop_schema(settings)
