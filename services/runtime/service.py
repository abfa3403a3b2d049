"""A service process: broker, pool, migrations, consumers, outbox relay, telemetry.

Each service builds one ``Service``, registers its handlers with ``consume``
and runs it with ``run()`` (a FastStream app: SIGTERM stops consuming, lets
in-flight handlers finish within ``graceful_timeout_s`` — anything cut off is
not acknowledged and is redelivered — then stops the relay and the pool).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.trace.export import SpanExporter

from contracts import Event, Topic
from services.runtime.consumer import EventConsumer, Handler, InvalidHandler
from services.runtime.database import create_pool
from services.runtime.migrations import migrate
from services.runtime.relay import OutboxRelay
from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import (
    build_tracer_provider,
    configure_logging,
    instrument_asyncpg,
)

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        name: str,
        *,
        settings: RuntimeSettings | None = None,
        schema: str | None = None,
        migrations: Path | None = None,
        span_exporter: SpanExporter | None = None,
        relay: bool = True,
    ) -> None:
        self.settings = (settings or RuntimeSettings()).model_copy(update={"service_name": name})
        self.name = name
        self.schema = schema or name.replace("-", "_")
        self.migrations = migrations
        self.source = f"/frontier-review/{name}"
        self.tracer_provider = build_tracer_provider(self.settings, span_exporter)
        self.broker = KafkaBroker(
            self.settings.kafka_bootstrap,
            client_id=name,
            enable_idempotence=True,  # implies acks=all; no duplicates on producer retry
            acks="all",
            max_request_size=max(1_048_576, self.settings.max_message_bytes + 65_536),
            graceful_timeout=self.settings.graceful_timeout_s,
            middlewares=[KafkaTelemetryMiddleware(tracer_provider=self.tracer_provider)],
            logger=logging.getLogger(f"frontier_review.{name}.broker"),
        )
        self.consumers: list[EventConsumer] = []
        self.produced: list[Topic] = []
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: Pool | None = None
        self.relay: OutboxRelay | None = None
        self._with_relay = relay

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    def consume(
        self,
        topic: Topic | str,
        handler: Handler,
        *,
        event_types: dict[str, type[Event]] | None = None,
        group: str | None = None,
        on_invalid: InvalidHandler | None = None,
    ) -> EventConsumer:
        """Apply every event of ``topic`` with ``handler`` (consumer group ``group``)."""
        name = topic if isinstance(topic, str) else topic.name
        types = (
            event_types
            if event_types is not None
            else (topic.event_types if isinstance(topic, Topic) else {})
        )
        consumer = EventConsumer(
            name=group or f"{self.name}.{name}",
            topic=name,
            event_types=types,
            handler=handler,
            pool=lambda: self.pool,
            broker=self.broker,
            settings=self.settings,
            source=self.source,
            on_invalid=on_invalid,
            tracer_provider=self.tracer_provider,
        )
        consumer.subscribe()
        self.consumers.append(consumer)
        return consumer

    def publishes(self, topic: Topic) -> None:
        """Declare that this service writes ``topic`` (through its outbox): documents it."""
        self.produced.append(topic)
        self.broker.publisher(
            topic.name,
            title=f"{topic.name}:send",
            description=topic.description or f"Events written by {self.name}.",
        )

    def background(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` (e.g. a scheduler or worker loop) while the service runs.

        It starts after the database is ready, is cancelled at shutdown, and is
        restarted after an unexpected error so one bad iteration can't stop it.
        """
        self._background.append(job)

    async def _supervise(self, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: background job %s failed; restarting", self.name, job)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        await self.open_database()
        await self.start_relay()
        await self.broker.start()

    async def open_database(self) -> None:
        instrument_asyncpg(self.tracer_provider)
        # The schema must exist before a pool whose search_path names it is useful.
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            applied = await migrate(
                conn, self.schema, *([self.migrations] if self.migrations else [])
            )
        finally:
            await conn.close()
        if applied:
            log.info("%s: applied migrations %s", self.name, ", ".join(applied))
        self._pool = await create_pool(self.settings, self.schema)

    async def start_relay(self) -> None:
        """Start the outbox relay and the background jobs (they need only the database)."""
        if self._with_relay:
            self.relay = OutboxRelay(self.settings, self.pool, self.schema, self.tracer_provider)
            self.relay.start()
        self._tasks = [asyncio.create_task(self._supervise(job)) for job in self._background]

    async def stop(self) -> None:
        await self.broker.stop()
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self.tracer_provider.shutdown()

    def app(self) -> FastStream:
        """The FastStream application; its signal handling gives graceful shutdown."""
        return FastStream(
            self.broker,
            # The relay and the jobs start before the broker: joining a consumer
            # group can wait out a dead member's session, and a due window must
            # not wait for that.
            on_startup=[self.open_database, self.start_relay],
            after_shutdown=[self.close],
        )

    def run(self, **_: Any) -> None:
        configure_logging(self.settings)
        asyncio.run(self.app().run())
