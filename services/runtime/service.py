"""A service process: broker, pool, migrations, consumers, relay, timers, jobs, HTTP.

Each service builds one ``Service`` from its settings (name, schema and topic
prefix are the same settings in every service), wires its handlers by event
type with ``consume``, its timers with ``timer``, its jobs with ``background``,
its routes with ``http`` and its own metrics on ``service.metrics``, and runs it
with ``run()``: a FastStream app. The HTTP server (``http_host:http_port``)
starts first and always serves ``/healthz``, ``/readyz`` and ``/metrics``
(health.py, metrics.py) beside the service's routes. SIGTERM stops fetching,
lets the batch in hand finish within ``graceful_timeout_s`` (anything cut off
is rolled back and not acknowledged, so it is redelivered), flushes the
committed offsets, then stops the jobs, the relay and the pool. A worker is a
Service without consumers or relay; a standalone relay is a Service with
nothing but its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from faststream import FastStream
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace.export import SpanExporter

from contracts import Event, Topic
from contracts.acl import AclScope
from contracts.principals import READ_MODELS, Role
from contracts.registry import DEAD_LETTER_BY_NAME, TOPIC_BY_NAME, consumer_group
from services.runtime import outbox
from services.runtime.acls import check_access
from services.runtime.clock import SYSTEM_CLOCK, Clock
from services.runtime.consumer import EventConsumer, Handler, Idempotency, InvalidHandler
from services.runtime.context import TxContext
from services.runtime.database import create_pool, database_name, migrate_schema
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from services.runtime.health import Health, Phase
from services.runtime.http import ASGIApp, serve
from services.runtime.kafka import faststream_security
from services.runtime.metrics import ServiceMetrics
from services.runtime.relay import OutboxRelay
from services.runtime.scheduler import Scheduler, TimerHandler
from services.runtime.settings import RuntimeSettings
from services.runtime.telemetry import (
    build_tracer_provider,
    configure_logging,
    instrument_asyncpg,
)

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]

HTTP_BIND_WAIT_S = 5.0


class Service:
    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        migrations: Sequence[Path] = (),
        clock: Clock | None = None,
        span_exporter: SpanExporter | None = None,
        relay: bool = True,
        description: str | None = None,
        role: Role | None = None,
    ) -> None:
        """``role``: the agency role whose ACLs this process needs (contracts.acl); it
        checks at start that its principal holds them, naming what is missing."""
        self.settings = settings
        self.role = role
        self.name = settings.service_name
        self.schema = settings.db_schema
        self.migrations = tuple(migrations)
        self.clock = clock or SYSTEM_CLOCK
        self.description = description
        self.source = settings.source
        self.tracer_provider = build_tracer_provider(settings, span_exporter)
        # A read model writes nothing, and an idempotent producer's start asks the broker
        # for a producer id, which it grants only to a principal that may write (the
        # console's may not); its broker's producer never sends.
        writes = role not in READ_MODELS
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            security=faststream_security(settings),  # the process's own SCRAM principal
            client_id=self.name,
            enable_idempotence=writes,  # implies acks=all; no duplicates on producer retry
            acks="all",
            max_request_size=DLQ_MAX_MESSAGE_BYTES,
            graceful_timeout=settings.graceful_timeout_s,
            logger=logging.getLogger(f"frontier_review.{self.name}.broker"),
        )
        self.consumers: list[EventConsumer] = []
        self.produced: list[Topic] = []
        self.timers: dict[str, TimerHandler] = {}
        self._jobs: list[Job] = []
        self._app: ASGIApp | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: Pool | None = None
        self.relay: OutboxRelay | None = None
        self.scheduler: Scheduler | None = None
        self._with_relay = relay
        self.http_port: int | None = None  # the port bound (http_port 0 picks one)
        self._http_bound = asyncio.Event()
        self._http_task: asyncio.Task[None] | None = None
        self.phase = Phase.CREATED
        self.metrics = ServiceMetrics(self)
        self.health = Health(self)

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    # wiring ---------------------------------------------------------------------
    def consume(
        self,
        topic: Topic,
        handlers: Mapping[type[Event], Handler],
        *,
        ignore: Iterable[type[Event]] = (),
        on_invalid: InvalidHandler | None = None,
        idempotency: Idempotency | None = None,
    ) -> EventConsumer:
        """Apply the events of ``topic`` with the handler for their type.

        The topic's other event types must be listed in ``ignore`` (a new type
        on a topic is a decision for each consumer); anything else is answered
        by ``on_invalid`` or dead-lettered. The consumer group is
        ``<service>.<topic>`` (under the Kafka prefix); replicas share it. A
        registry topic (or a registry topic's DLQ, contracts.registry
        DEAD_LETTER_TOPICS) is named under the prefix; a topic outside the
        registry (a runtime test's own) by its name as given.
        """
        handled = set(handlers)
        unknown = (handled | set(ignore)) - set(topic.events)
        if unknown:
            names = ", ".join(sorted(t.__name__ for t in unknown))
            raise ValueError(f"{names} do not travel on {topic.name} (contracts.registry)")
        registered = (
            TOPIC_BY_NAME.get(topic.name) is topic or DEAD_LETTER_BY_NAME.get(topic.name) is topic
        )
        name = self.settings.topic(topic.name) if registered else topic.name
        consumer = EventConsumer(
            group=self.settings.topic(consumer_group(self.name, topic.name)),
            topic=name,
            registry_topic=topic,
            event_types=topic.event_types,
            handlers=handlers,
            ignore=frozenset(ignore),
            pool=lambda: self.pool,
            broker=self.broker,
            settings=self.settings,
            clock=self.clock,
            on_invalid=on_invalid,
            idempotency=idempotency,
            tracer_provider=self.tracer_provider,
            metrics=self.metrics.consumer(name),
        )
        consumer.subscribe()
        self.consumers.append(consumer)
        return consumer

    def publishes(self, topic: Topic) -> None:
        """Declare that this service writes ``topic`` (through its outbox): documents it."""
        self.produced.append(topic)
        self.broker.publisher(
            self.settings.topic(topic.name),
            title=f"{topic.name}:send",
            description=topic.description or f"Events written by {self.name}.",
        )

    def timer(self, kind: str, handler: TimerHandler) -> None:
        """Fire ``handler`` once for every due timer of ``kind`` (see scheduler.py)."""
        self.timers[kind] = handler

    def background(self, job: Job) -> None:
        """Run ``job`` (e.g. a worker loop) while the service runs.

        It starts after the database is ready, is cancelled at shutdown, and is
        restarted after an unexpected error so one bad iteration can't stop it.
        """
        self._jobs.append(job)

    def http(self, app: ASGIApp) -> None:
        """Serve ``app`` on ``settings.http_host:http_port`` while the service runs, behind
        the runtime's ``/healthz``, ``/readyz`` and ``/metrics`` (health.py)."""
        if self._app is not None:
            raise ValueError(f"{self.name} serves one ASGI app; route inside it")
        self._app = app

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[TxContext]:
        """A transaction of the service's own (a worker's, a CLI's) that may publish."""
        async with (
            self.pool.acquire() as conn,
            outbox.publishing(conn, self.settings, self.clock) as ctx,
        ):
            yield ctx

    # lifecycle --------------------------------------------------------------------
    async def check_access(self) -> None:
        """Fail at start, naming the topic and operation, if the principal lacks an ACL."""
        if self.role is None:
            return
        scope = AclScope(
            prefix=self.settings.topic_prefix,
            database=database_name(self.settings.database_url),
            schemas={self.role: self.schema},
        )
        await check_access(self.settings, self.role, scope)

    async def start_http(self) -> None:
        """The HTTP server, first: alive (and saying why it is not ready) while the rest
        starts. Returns once the port is bound, or after a few seconds if it is busy
        (the server keeps retrying; the service does not wait for it)."""
        self.phase = Phase.STARTING
        if self.settings.http_port is None or self._http_task is not None:
            return
        self._http_task = asyncio.create_task(self._supervise(self._serve_http))
        self._tasks.append(self._http_task)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HTTP_BIND_WAIT_S):
                await self._http_bound.wait()

    async def open_database(self) -> None:
        if self.settings.otel_db_statements:
            instrument_asyncpg(self.tracer_provider)
        applied = await migrate_schema(self.settings, self.migrations)
        if applied:
            log.info("%s: applied migrations %s", self.name, ", ".join(applied))
        self._pool = await create_pool(self.settings)

    async def start_relay(self) -> None:
        if self._with_relay:
            self.relay = OutboxRelay(self.settings, self.pool, self.tracer_provider)
            self.relay.start()

    async def start_jobs(self) -> None:
        """Timers, background jobs and HTTP: they need only the database, and start
        before the consumers (joining a group can wait out a dead member's session,
        and a due deadline must not wait for that)."""
        jobs = list(self._jobs)
        if self.timers:
            self.scheduler = Scheduler(
                lambda: self.pool, self.settings, self.clock, self.timers, self.tracer_provider
            )
            jobs.append(self.scheduler.run)
        self._tasks += [asyncio.create_task(self._supervise(job)) for job in jobs]

    async def start_consumers(self) -> None:
        for consumer in self.consumers:
            consumer.start()
        self.phase = Phase.RUNNING

    async def stop_consumers(self) -> None:
        self.phase = Phase.STOPPING
        await asyncio.gather(*(consumer.stop() for consumer in self.consumers))

    async def start(self) -> None:
        """Start everything (tests and embedded use; ``run()`` does the same in order).
        If a step fails, what started is stopped again before the error propagates."""
        try:
            await self.start_http()
            await self.check_access()
            await self.open_database()
            await self.start_relay()
            await self.start_jobs()
            await self.broker.start()
            await self.start_consumers()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything; the relay, timers and jobs stop even if stopping the consumers
        or the broker fails (a stopped service must never go on publishing)."""
        try:
            await self.stop_consumers()
            await self.broker.stop()
        finally:
            await self.close()

    async def close(self) -> None:
        self.phase = Phase.STOPPING
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
        await self.metrics.close()
        await self.health.close()
        self.http_port = None
        self._http_task = None
        self._http_bound.clear()
        self.phase = Phase.STOPPED
        self.tracer_provider.shutdown()

    def app(self) -> FastStream:
        """The FastStream application; its signal handling gives graceful shutdown."""
        return FastStream(
            self.broker,
            on_startup=[
                self.start_http,
                self.check_access,
                self.open_database,
                self.start_relay,
                self.start_jobs,
            ],
            after_startup=[self.start_consumers],
            on_shutdown=[self.stop_consumers],
            after_shutdown=[self.close],
        )

    def run(self) -> None:
        configure_logging(self.settings)
        asyncio.run(self.app().run())

    # internals -----------------------------------------------------------------------
    async def _supervise(self, job: Job) -> None:
        while True:
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: background job %s failed; restarting", self.name, job)
                await asyncio.sleep(1.0)

    async def _serve_http(self) -> None:
        assert self.settings.http_port is not None

        def bound(port: int) -> None:
            self.http_port = port
            self._http_bound.set()

        app = self.health.app(self._app)
        await serve(app, self.settings.http_host, self.settings.http_port, bound=bound)
