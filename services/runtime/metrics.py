"""Prometheus metrics of a service: its own registry, the runtime's metrics, and the
service's.

Every ``Service`` has one ``ServiceMetrics`` (``service.metrics``) with a registry of
its own, never prometheus-client's global one, so two services in one process (a
test, an embedded worker) keep their numbers apart. The embedded HTTP server serves
it at ``/metrics`` (health.py). What the runtime measures, for every service alike:

- ``frontier_review_handler_duration_seconds`` (histogram; topic, event_type, outcome):
  time to apply one record;
- ``frontier_review_dead_letters_total`` (counter; topic, reason): records this
  process dead-lettered;
- ``frontier_review_consumer_lag_records`` (gauge; group, topic, partition): records
  not yet applied, per partition this replica holds;
- ``frontier_review_consumer_assigned_partitions`` (gauge; group, topic);
- ``frontier_review_outbox_backlog_rows``, ``..._outbox_oldest_unpublished_age_seconds``
  (gauges): outbox rows not yet published, and the age of the oldest;
- ``frontier_review_outbox_parked_rows`` (gauge; topic): rows parked for a missing
  tenant feed (relay.py);
- ``frontier_review_outbox_relay_leading`` (gauge): 1 where this process's relay is
  the elected one; ``frontier_review_outbox_published_total`` (counter);
- ``frontier_review_timers_pending``, ``frontier_review_timers_due``,
  ``frontier_review_timers_failed`` (gauges; kind): pending timers (intake's open
  review windows, risk's decision deadlines, ...), those past their due time, and
  timers that gave up;
  ``frontier_review_timers_fired_total`` (counter);
- ``frontier_review_metrics_source_up`` (gauge; source = database | kafka): 1 if the
  last refresh from it worked (for the database: every query), else some values are
  old (a query that fails keeps its last values and does not stop the others).

``outcome`` is ``applied`` (the handler's transaction committed), ``retried`` (an
attempt that failed and was tried again), ``dead_lettered`` (the last attempt, or an
undecodable record, went to ``<topic>.dlq``) or ``answered_invalid`` (the service's
``on_invalid`` answered the sender). A record counts once it committed: a run that
rolled back and was applied again counts once. ``event_type`` is the CloudEvent type
from the registry, ``invalid`` for a record that did not decode (never a type the
sender wrote: labels must not be chosen from outside).

**The hot path pays almost nothing.** A consumer counts each record in a
plain-Python histogram of its own (``_LoopHistogram``: a bisect and two additions,
no lock, because every update and every scrape run on the service's event loop),
about 1 µs against ~6 µs for prometheus-client's locked ``Histogram``
(benchmarks/metrics_overhead.py).

**Gauges that need a query** (the outbox backlog, parked rows, timers, consumer lag,
and what a service registers with ``query``) are refreshed when scraped, at most
once every ``metrics_refresh_s`` (scrapes in between get the last values, so a
scraper can't hammer the database), by one refresh at a time, on a connection of
their own (``database.Probe``: never a handler's), every statement bounded. A scrape
waits for a refresh at most ``metrics_timeout_s``, then answers with what it has.
Values derived from the database are the same on every replica: aggregate them with
``max``, not ``sum``.

A service adds its own with ``counter``/``gauge``/``histogram`` (prometheus-client
objects on this registry, for what the service counts as it goes), ``query`` (a
gauge read from its schema at scrape time; the SQL belongs in its queries.py) or
``register`` (any collector).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from services.runtime import outbox, timers
from services.runtime.database import Probe

if TYPE_CHECKING:
    from services.runtime.consumer import EventConsumer
    from services.runtime.database import Connection
    from services.runtime.service import Service

log = logging.getLogger(__name__)

PREFIX = "frontier_review_"
# Handlers take milliseconds (one transaction) to seconds (a slow dependency).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INVALID_EVENT_TYPE = "invalid"

LabelValues = tuple[str, ...]
Samples = Mapping[LabelValues, float]
Query = Callable[["Connection"], Awaitable[Samples]]


class Outcome(StrEnum):
    APPLIED = "applied"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    ANSWERED_INVALID = "answered_invalid"


class _LoopHistogram:
    """A histogram family updated on the event loop only: no lock, a bisect per value.

    prometheus-client's ``Histogram`` takes a lock per bucket and per sum; a consumer
    observes every record it applies, on one thread, so it needs neither.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = (*sorted(float(b) for b in buckets), float("inf"))
        self._series: dict[LabelValues, list[float]] = {}  # count per bucket, then the sum

    def observe(self, labels: LabelValues, value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self._bounds) + 1)
        series[bisect.bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self._series.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(self._bounds, series, strict=False):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family.add_metric(list(labels), buckets, sum_value=series[-1])
        yield family


class _LoopCounter:
    """A counter family updated on the event loop only (see ``_LoopHistogram``)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues, amount: float = 1.0) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self._values.items()):
            family.add_metric(list(labels), value)
        yield family


class QueryGauge:
    """A gauge (or, with ``counter``, a total kept by the database) read by a query
    when scraped. The query returns ``{label values: value}``; label sets it no longer
    returns disappear. Until the first refresh it has no samples."""

    def __init__(
        self,
        name: str,
        documentation: str,
        query: Query,
        labelnames: Sequence[str] = (),
        *,
        counter: bool = False,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.query = query
        self.labelnames = tuple(labelnames)
        self.counter = counter
        self.values: dict[LabelValues, float] = {}

    async def refresh(self, conn: Connection) -> None:
        found = await self.query(conn)
        self.values = {tuple(labels): float(value) for labels, value in found.items()}

    def _family(self) -> GaugeMetricFamily | CounterMetricFamily:
        if self.counter:
            return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        yield self._family()

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        yield family


class ConsumerMetrics:
    """What one consumer records per committed record (consumer.py calls it)."""

    def __init__(self, durations: _LoopHistogram, dead_letters: _LoopCounter, topic: str) -> None:
        self._durations = durations
        self._dead_letters = dead_letters
        self.topic = topic

    @classmethod
    def detached(cls, topic: str) -> ConsumerMetrics:
        """Metrics no registry serves (a consumer built outside a Service)."""
        return cls(_durations(), _dead_letters(), topic)

    def handled(self, event_type: str, outcome: Outcome, seconds: float) -> None:
        self._durations.observe((self.topic, event_type, outcome), seconds)

    def dead_lettered(self, reason: str) -> None:
        self._dead_letters.inc((self.topic, reason))


def _durations() -> _LoopHistogram:
    return _LoopHistogram(
        f"{PREFIX}handler_duration_seconds",
        "Time to apply one record, by outcome; counted once its transaction committed.",
        ("topic", "event_type", "outcome"),
        DURATION_BUCKETS,
    )


def _dead_letters() -> _LoopCounter:
    return _LoopCounter(
        f"{PREFIX}dead_letters",
        "Records this process dead-lettered (to <topic>.dlq), by reason code.",
        ("topic", "reason"),
    )


class ServiceMetrics:
    """The registry of one service and what refreshes its query-backed gauges."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.durations = _durations()
        self.dead_letters = _dead_letters()
        self._lag: dict[tuple[str, str, int], float] = {}
        self._assigned: dict[tuple[str, str], float] = {}
        self._source_up: dict[str, float] = {}
        self._probe = Probe(service.settings, "metrics")
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at: float | None = None
        self.register(self.durations)
        self.register(self.dead_letters)
        self.register(_RuntimeCollector(self))
        self._refreshed_from_database: list[QueryGauge | _RuntimeTables] = [_RuntimeTables(service)]
        self.register(self._refreshed_from_database[0])

    # what a service uses ----------------------------------------------------------
    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return Counter(_named(name), documentation, labelnames, registry=self.registry)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return Gauge(_named(name), documentation, labelnames, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        return Histogram(
            _named(name), documentation, labelnames, registry=self.registry, buckets=buckets
        )

    def query(
        self,
        name: str,
        documentation: str,
        query: Query,
        labelnames: Sequence[str] = (),
        *,
        counter: bool = False,
    ) -> QueryGauge:
        """A gauge read from the service's schema by ``query`` when scraped (bounded:
        see the module doc). Keep the query to an index; it runs every few seconds."""
        gauge = QueryGauge(_named(name), documentation, query, labelnames, counter=counter)
        self.register(gauge)
        self._refreshed_from_database.append(gauge)
        return gauge

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    # what the runtime uses ----------------------------------------------------------
    def consumer(self, topic: str) -> ConsumerMetrics:
        return ConsumerMetrics(self.durations, self.dead_letters, topic)

    async def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the scraper accepts, after a bounded refresh."""
        await self.refresh()
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def refresh(self) -> None:
        """Refresh the query-backed values unless they are fresh; wait at most
        ``metrics_timeout_s`` for it (the refresh goes on, and the next scrape has it)."""
        settings = self.service.settings
        loop = asyncio.get_running_loop()
        if self._refreshing is None:
            if (
                self._refreshed_at is not None
                and loop.time() - self._refreshed_at < settings.metrics_refresh_s
            ):
                return
            self._refreshed_at = loop.time()
            self._refreshing = asyncio.create_task(self._refresh(), name="metrics-refresh")
            self._refreshing.add_done_callback(self._refreshed)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.metrics_timeout_s):
                await asyncio.shield(self._refreshing)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refreshing
        await self._probe.close()

    # internals ---------------------------------------------------------------------
    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing = None

    async def _refresh(self) -> None:
        await asyncio.gather(self._refresh_database(), self._refresh_lag())

    async def _refresh_database(self) -> None:
        settings = self.service.settings

        failed: list[str] = []

        async def read(conn: Connection) -> None:
            # One query that fails (a service's bug) keeps its old values and does not
            # stop the others; the connection stays usable (no transaction is open).
            for source in self._refreshed_from_database:
                try:
                    await source.refresh(conn)
                except asyncpg.PostgresError as exc:
                    failed.append(source.name)
                    log.warning("metrics: %s failed: %r", source.name, exc)

        try:
            await self._probe.run(read, limit_s=settings.metrics_timeout_s * 2)
            self._source_up["database"] = 0.0 if failed else 1.0
        except Exception as exc:
            self._source_up["database"] = 0.0
            log.warning("metrics: reading the database failed: %r", exc)

    async def _refresh_lag(self) -> None:
        if not self.service.consumers:
            return
        lag: dict[tuple[str, str, int], float] = {}
        assigned: dict[tuple[str, str], float] = {}
        try:
            async with asyncio.timeout(self.service.settings.metrics_timeout_s * 2):
                for consumer in self.service.consumers:
                    owned = consumer.owned
                    assigned[(consumer.group, consumer.topic)] = float(len(owned))
                    for tp, records in (await consumer_lag(consumer, owned)).items():
                        lag[(consumer.group, tp.topic, tp.partition)] = float(records)
            self._lag, self._assigned = lag, assigned
            self._source_up["kafka"] = 1.0
        except Exception as exc:
            self._source_up["kafka"] = 0.0
            log.warning("metrics: reading the consumers' end offsets failed: %r", exc)


async def consumer_lag(
    consumer: EventConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Records of each partition not yet applied by ``consumer``: the partition's end
    (the last stable offset: the consumer reads committed records only) minus the
    offset of its next record to apply. That is the first fetched record not applied
    yet, else the consumer's position, which (unlike the committed offset) is past the
    transaction markers the relays write, so a consumer that caught up shows 0."""
    kafka = consumer.kafka_consumer
    wanted = list(partitions)
    if kafka is None or not wanted:
        return {}
    ends = await kafka.end_offsets(wanted)
    lag: dict[TopicPartition, int] = {}
    for tp in wanted:
        next_offset = consumer.first_unapplied(tp)
        if next_offset is None:
            try:
                next_offset = await kafka.position(tp)
            except Exception:  # revoked meanwhile: the new owner reports it
                continue
        lag[tp] = max(0, ends[tp] - next_offset)
    return lag


class _RuntimeTables:
    """The runtime's tables in the service's schema: outbox backlog, parked rows, timers."""

    name = "the runtime's tables"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.backlog: tuple[int, float] | None = None
        self.parked: dict[str, int] = {}
        self.timers: dict[str, timers.TimerCounts] = {}

    async def refresh(self, conn: Connection) -> None:
        self.backlog = await outbox.backlog(conn)
        self.parked = {topic: count for topic, count, _ in await outbox.parked(conn)}
        kinds = sorted(self.service.timers)
        if kinds:
            self.timers = await timers.timer_counts(conn, kinds, self.service.clock.now())

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(samples=True)

    def _families(self, samples: bool = False) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            f"{PREFIX}outbox_backlog_rows",
            "Outbox rows not yet published (the same on every replica: aggregate with max).",
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox row; 0 when there is none.",
        )
        parked = GaugeMetricFamily(
            f"{PREFIX}outbox_parked_rows",
            "Rows parked because their tenant feed did not exist "
            "(python -m services.runtime.outbox parked|requeue).",
            labels=("topic",),
        )
        pending = GaugeMetricFamily(
            f"{PREFIX}timers_pending",
            "Timers waiting to fire (due or not), e.g. open review windows.",
            labels=("kind",),
        )
        due = GaugeMetricFamily(
            f"{PREFIX}timers_due",
            "Pending timers past their due time that have not fired yet.",
            labels=("kind",),
        )
        failed = GaugeMetricFamily(
            f"{PREFIX}timers_failed",
            "Timers whose handler failed every attempt (see the timers table's last_error).",
            labels=("kind",),
        )
        if samples and self.backlog is not None:
            backlog.add_metric([], float(self.backlog[0]))
            oldest.add_metric([], self.backlog[1])
            for topic, count in self.parked.items():
                parked.add_metric([topic], float(count))
            for kind, counts in self.timers.items():
                pending.add_metric([kind], float(counts.pending))
                due.add_metric([kind], float(counts.due))
                failed.add_metric([kind], float(counts.failed))
        yield from (backlog, oldest, parked, pending, due, failed)


class _RuntimeCollector:
    """The runtime's in-memory figures, read at scrape time."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(samples=True)

    def _families(self, samples: bool = False) -> Iterator[Metric]:
        metrics, service = self.metrics, self.metrics.service
        lag = GaugeMetricFamily(
            f"{PREFIX}consumer_lag_records",
            "Records of the partition not yet applied by this replica's consumer.",
            labels=("group", "topic", "partition"),
        )
        assigned = GaugeMetricFamily(
            f"{PREFIX}consumer_assigned_partitions",
            "Partitions of the topic this replica's consumer holds.",
            labels=("group", "topic"),
        )
        leading = GaugeMetricFamily(
            f"{PREFIX}outbox_relay_leading",
            "1 where this process's relay is the elected one of the outbox.",
        )
        published = CounterMetricFamily(
            f"{PREFIX}outbox_published",
            "Records this process's relay published.",
        )
        fired = CounterMetricFamily(f"{PREFIX}timers_fired", "Timers this process fired.")
        up = GaugeMetricFamily(
            f"{PREFIX}metrics_source_up",
            "1 if the last refresh from this source worked (else the values are old).",
            labels=("source",),
        )
        if samples:
            for (group, topic, partition), value in metrics._lag.items():
                lag.add_metric([group, topic, str(partition)], value)
            for (group, topic), value in metrics._assigned.items():
                assigned.add_metric([group, topic], value)
            relay = service.relay
            leading.add_metric([], 1.0 if relay is not None and relay.leading.is_set() else 0.0)
            published.add_metric([], float(relay.published if relay is not None else 0))
            scheduler = service.scheduler
            fired.add_metric([], float(scheduler.fired if scheduler is not None else 0))
            for source, value in metrics._source_up.items():
                up.add_metric([source], value)
        yield from (lag, assigned, leading, published, fired, up)


def _le(bound: float) -> str:
    """A bucket's upper bound as the text format writes it."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _named(name: str) -> str:
    """Every metric of the system starts with ``frontier_review_``."""
    return name if name.startswith(PREFIX) else f"{PREFIX}{name}"
