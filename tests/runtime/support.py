"""A tiny test service: counts the Ping events it applies, optionally forwards them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

from aiokafka import AIOKafkaProducer

from contracts import Event, encode, make_event
from services.runtime.consumer import Delivery, Handler, PermanentError
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings

MIGRATIONS = Path(__file__).parent / "sql"


class Ping(Event):
    TYPE: ClassVar[str] = "test.Ping"
    key: str
    seq: int
    fail: bool = False
    permanent: bool = False


PING_TYPES: dict[str, type[Event]] = {Ping.TYPE: Ping}


def counting_handler(delay: float = 0.0, forward_to: str | None = None) -> Handler:
    async def apply(delivery: Delivery) -> None:
        ping = delivery.event.data
        assert isinstance(ping, Ping)
        if ping.permanent:
            raise PermanentError("test_refused", f"ping {ping.seq} is refused")
        if ping.fail:
            raise RuntimeError(f"ping {ping.seq} always fails")
        if delay:
            await asyncio.sleep(delay)
        await delivery.conn.execute(
            """INSERT INTO applied (event_id, key, seq) VALUES ($1, $2, $3)
               ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1""",
            delivery.event.id,
            ping.key,
            ping.seq,
        )
        if forward_to:
            await delivery.outbox.publish(forward_to, ping, subject=ping.key)

    return apply


def ping_record(key: str, seq: int, **flags: bool) -> bytes:
    return encode(make_event(Ping(key=key, seq=seq, **flags), source="/tests", subject=key))


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[str, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key.encode(), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def counter_service(
    settings: RuntimeSettings,
    name: str,
    schema: str,
    topic: str,
    delay: float = 0.0,
    forward_to: str | None = None,
) -> Service:
    service = Service(name, settings=settings, schema=schema, migrations=MIGRATIONS)
    service.consume(topic, counting_handler(delay, forward_to), event_types=PING_TYPES)
    return service


if __name__ == "__main__":
    # Run as a separate process, so tests can SIGKILL / SIGTERM it.
    counter_service(
        RuntimeSettings(),
        os.environ["FR_SERVICE_NAME"],
        os.environ["TEST_SCHEMA"],
        os.environ["TEST_TOPIC"],
        delay=float(os.environ.get("TEST_DELAY", "0")),
    ).run()
