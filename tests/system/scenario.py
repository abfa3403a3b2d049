"""A system test's run: the labs file a workload while faults strike, reviewers decide
the escalations, the system drains, and what it left behind is read back.

``run_workload`` returns a ``Run``: every record of every topic of the rig, the tables
each service applied events to (read through its schema), what each enforcer applied,
the audit verification, and the faults with what was in flight when each struck. The
properties (tests/system/properties.py) are checked on that snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.events.risk import EscalationDecision
from contracts.registry import TOPICS
from services.labclient.enforcer import Enforcer
from services.risk.reviewer import build_decision, prepare
from services.runtime import TRANSIENT_ERRORS
from tests.kit import Producer
from tests.system.rig import SERVICES, ServiceProcess, SystemRig, process_env
from tests.system.stack import Stack, StackNotUnderTest
from tests.system.workload import (
    Filing,
    Intended,
    Kind,
    Poison,
    file_all,
    of_kind,
)

log = logging.getLogger(__name__)

# The database or broker being away (restarting) while the harness asks: "not yet".
UNAVAILABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, OSError, KafkaError)

Records = list[ConsumerRecord[bytes, bytes]]
# What the harness reads of each service's schema after the run.
TABLES: dict[str, dict[str, str]] = {
    "intake": {
        "submissions": "SELECT submission_id, lab_id, state, reason, model_id FROM submissions",
        "history": "SELECT submission_id, kind, event_id FROM submission_history",
    },
    "evaluation": {
        "evaluations": "SELECT submission_id FROM evaluations",
        "jobs": "SELECT job_id, submission_id, state, attempts FROM jobs",
        "findings": "SELECT finding_id, submission_id FROM findings",
    },
    "risk": {
        "reviews": "SELECT submission_id, outcome, withdrawn_at FROM reviews",
        "conclusions": "SELECT submission_id, outcome FROM conclusions",
        "escalations": "SELECT escalation_id, submission_id, status FROM escalations",
        "orders": "SELECT order_id, submission_id, interim FROM orders",
        # What an entry is about, beyond its subject: a submission's interim and final
        # orders, or its assessments before and after the evaluation completed, are
        # entries of their own.
        "audit": "SELECT sequence, kind, subject, concat_ws(' ', content_json->>'order_id', "
        "content_json->>'assessment_id', content_json->>'escalation_id', "
        "content_json->>'policy_version') AS about FROM audit_log",
    },
    "access": {
        "policies": "SELECT model_id, version, order_ids FROM model_policies",
        "heads": "SELECT model_id, version FROM model_heads",
        "orders": "SELECT order_id, model_id, ended FROM orders",
    },
}
RUNTIME_TABLES = {
    "outbox": "SELECT id, topic, key, event_id, published_at IS NOT NULL AS published FROM outbox",
    "inbox": 'SELECT consumer, event_id, topic, "partition", "offset" FROM inbox',
}


@dataclass
class Fault:
    what: str
    at_s: float  # seconds since the labs began filing
    in_flight: int  # submissions filed and not yet at their outcome when it struck
    took_s: float  # until the restarted part was up again


@dataclass
class Run:
    rig: SystemRig
    planned: list[Intended]
    poison: list[Poison]
    filing: Filing
    faults: list[Fault]
    topics: dict[str, Records]  # unprefixed name -> every committed record
    tables: dict[str, dict[str, list[asyncpg.Record]]]  # service -> table -> rows
    enforced: dict[str, dict[str, int]]  # enforcer -> model -> version applied
    audit: tuple[int, str]  # exit code and output of `risk.cli audit verify`
    timings: dict[str, float] = field(default_factory=dict)

    def prefixed(self, name: str) -> str:
        return self.rig.topic(name)


# --- polling ------------------------------------------------------------------------------


async def poll(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    every: float = 0.5,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Wait for ``condition`` (a database outage while asking is a "not yet")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await condition():
                return
        except UNAVAILABLE:
            pass
        if loop.time() > deadline:
            detail = await explain() if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}. {detail}")
        await asyncio.sleep(every)


@dataclass
class Progress:
    """How far the submissions got, from the services' own tables."""

    states: dict[str, int]
    concluded: int

    @property
    def decided(self) -> int:
        return sum(self.states.values())

    @property
    def terminal(self) -> int:
        return self.states.get("rejected", 0) + self.states.get("withdrawn", 0) + self.concluded


async def progress(rig: SystemRig) -> Progress:
    rows = await rig.fetch("intake", "SELECT state, count(*) AS n FROM submissions GROUP BY state")
    concluded = await rig.fetchval("risk", "SELECT count(*) FROM conclusions")
    return Progress({r["state"]: r["n"] for r in rows}, int(concluded))


# --- faults -------------------------------------------------------------------------------


class Faults:
    """Strikes one fault at a time, each once the system has moved on from the last."""

    def __init__(
        self, rig: SystemRig, stack: Stack | None, filing: Filing, total: int, started: float
    ) -> None:
        self.rig = rig
        self._stack = stack
        self.filing = filing
        self.total = total  # submissions planned
        self.started = started
        self.struck: list[Fault] = []

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise StackNotUnderTest("this run restarts no infrastructure: it was given no stack")
        return self._stack

    async def in_flight(self) -> int:
        try:
            done = (await progress(self.rig)).terminal
        except UNAVAILABLE:
            return -1
        return self.filing.published - done

    async def in_flight_reaches(self, count: int, *, timeout: float = 300.0) -> None:
        """Wait until ``count`` submissions are filed and not yet at their outcome."""

        async def reached() -> bool:
            return await self.in_flight() >= count

        await poll(reached, timeout=timeout, what=f"{count} submissions in flight")

    async def moved_on(self, *, at_least: int, timeout: float = 120.0) -> None:
        """Liveness between faults: ``at_least`` more submissions decided or concluded
        (or every one of them already terminal: nothing is left to move)."""
        before: list[int] = []

        async def moved() -> bool:
            now = await progress(self.rig)
            done = now.decided + now.concluded
            before[:] = before or [done]
            return done >= before[0] + at_least or now.terminal >= self.total

        await poll(moved, timeout=timeout, what=f"{at_least} more submissions to move on")

    async def strike(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        in_flight = await self.in_flight()
        at = time.monotonic()
        log.warning("fault: %s (%d submissions in flight)", what, in_flight)
        await action()
        self.struck.append(Fault(what, at - self.started, in_flight, time.monotonic() - at))

    async def kill_and_restart(self, process: ServiceProcess) -> None:
        async def action() -> None:
            await process.kill()
            await process.start()
            await process.ready()

        await self.strike(f"SIGKILL {process.name}", action)


# --- reviewers ----------------------------------------------------------------------------


def final_order(now: datetime) -> dict[str, Any]:
    """The order the confirming reviewers sign (both the same: one order hash)."""
    return {
        "scope": {"nationality_rule": "any", "country_groups": ["embargoed"]},
        "effective_at": now.isoformat(),
        "expires_at": (now + timedelta(days=180)).isoformat(),
        "compliance_deadline": (now + timedelta(days=1)).isoformat(),
    }


async def decide_escalations(rig: SystemRig, planned: list[Intended], *, timeout: float) -> None:
    """Two reviewers sign the same decision on each escalation of a CONFIRMED (restrict,
    one order) or DISMISSED (no restriction) submission, once risk raised it. A review
    that concluded first (its window closed before any escalation was open) is left to
    the outcome checks, which report it."""
    wanted = {p.submission_id: p.kind for p in of_kind(planned, Kind.CONFIRMED, Kind.DISMISSED)}
    order = final_order(datetime.now(UTC))
    decided: set[UUID] = set()
    concluded: set[UUID] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with Producer(rig.settings.risk) as producer:
        while len(decided | concluded) < len(wanted):
            if loop.time() > deadline:
                raise AssertionError(f"escalations decided: {len(decided)} of {len(wanted)}")
            try:
                rows = await rig.fetch(
                    "risk",
                    "SELECT escalation_id, submission_id FROM escalations WHERE status = 'open'",
                )
                concluded = {
                    r["submission_id"]
                    for r in await rig.fetch("risk", "SELECT submission_id FROM conclusions")
                    if r["submission_id"] in wanted
                }
            except UNAVAILABLE:
                rows = []
            for row in rows:
                sid = row["submission_id"]
                if sid not in wanted or sid in decided:
                    continue
                for reviewer in ("r1", "r2"):
                    who = rig.reviewers[reviewer]
                    confirm = wanted[sid] is Kind.CONFIRMED
                    signed = build_decision(
                        escalation_id=row["escalation_id"],
                        submission_id=sid,
                        reviewer_id=who.reviewer_id,
                        key_id=who.key_id,
                        key=who.key,
                        decision=(
                            EscalationDecision.RESTRICT
                            if confirm
                            else EscalationDecision.NO_RESTRICTION
                        ),
                        justification=f"{who.reviewer_id} checked the evidence.",
                        order=order if confirm else None,
                    )
                    outgoing = prepare(signed)
                    while True:
                        try:
                            await producer.send(
                                rig.topic("reviewers.decisions"), outgoing.raw, str(sid)
                            )
                            break
                        except KafkaError:
                            await asyncio.sleep(1.0)
                decided.add(sid)
            await asyncio.sleep(0.5)


# --- draining -----------------------------------------------------------------------------


async def all_terminal(rig: SystemRig, planned: list[Intended]) -> bool:
    rows = await rig.fetch("intake", "SELECT submission_id, state FROM submissions")
    states = {r["submission_id"]: r["state"] for r in rows}
    concluded = {
        r["submission_id"] for r in await rig.fetch("risk", "SELECT submission_id FROM conclusions")
    }
    for p in planned:
        state = states.get(p.submission_id)
        if p.kind is Kind.REJECTED:
            if state != "rejected":
                return False
        elif p.kind is Kind.WITHDRAWN:
            if state != "withdrawn":
                return False
        elif state != "closed" or p.submission_id not in concluded:
            return False
    return True


async def missing_outcomes(rig: SystemRig, planned: list[Intended]) -> str:
    try:
        now = await progress(rig)
    except UNAVAILABLE as exc:
        return f"(progress unreadable: {exc!r})"
    return f"intake states {now.states}, {now.concluded} concluded, of {len(planned)} planned"


async def drained(rig: SystemRig) -> bool:
    """Nothing left in any outbox, twice in a row with no new inbox rows in between."""

    async def counts() -> tuple[int, int]:
        pending = inbox = 0
        for service in SERVICES:
            pending += await rig.fetchval(
                service, "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            inbox += await rig.fetchval(service, "SELECT count(*) FROM inbox")
        return pending, inbox

    first = await counts()
    await asyncio.sleep(2.0)
    second = await counts()
    return first[0] == 0 and second[0] == 0 and first[1] == second[1]


async def latest_versions(rig: SystemRig) -> dict[str, int]:
    rows = await rig.fetch("access", "SELECT model_id, version FROM model_heads")
    return {r["model_id"]: r["version"] for r in rows}


def applied(enforcer: Enforcer) -> dict[str, int]:
    return {m: v.version for m, v in enforcer.status().models.items()}


def of_lab(versions: dict[str, int], lab_id: str) -> dict[str, int]:
    return {m: v for m, v in versions.items() if m.startswith(f"{lab_id}/")}


# --- reading back -------------------------------------------------------------------------


async def read_all(rig: SystemRig, topic: str) -> Records:
    """Every committed record of ``topic`` (an actual name), from the beginning to the end
    offsets taken when it starts reading."""
    consumer = AIOKafkaConsumer(
        **rig.settings.intake.kafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: Records = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(*partitions, timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} does not exist")


def topic_names(rig: SystemRig) -> list[str]:
    """Every topic of the rig (unprefixed): the registry's, their DLQs, the labs' feeds."""
    names = [t.name for t in TOPICS] + [t.dlq for t in TOPICS]
    for lab_id in rig.labs:
        names += [f"labs.{lab_id}.answers", f"labs.{lab_id}.policies"]
    return names


async def snapshot_tables(rig: SystemRig) -> dict[str, dict[str, list[asyncpg.Record]]]:
    tables: dict[str, dict[str, list[asyncpg.Record]]] = {}
    for service in SERVICES:
        queries = TABLES[service] | RUNTIME_TABLES
        tables[service] = {name: await rig.fetch(service, q) for name, q in queries.items()}
    return tables


async def verify_audit(rig: SystemRig) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.risk.cli",
        "audit",
        "verify",
        env=process_env(rig.settings.risk, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


# --- the run ------------------------------------------------------------------------------


FaultPlan = Callable[[Faults], Awaitable[None]]


async def run_workload(
    rig: SystemRig,
    planned: list[Intended],
    poison: list[Poison],
    *,
    rate: float,
    faults: FaultPlan,
    stack: Stack | None,
    deadline_s: float,
) -> Run:
    """File everything while ``faults`` strike, decide the escalations, wait (at most
    ``deadline_s`` from the first filing) until every submission reached its outcome and
    the system drained, then stop the services and read back what they left."""
    timings: dict[str, float] = {}
    await rig.follow_policies()
    filing = Filing()
    started = time.monotonic()
    striker = Faults(rig, stack, filing, len(planned), started)
    filer = asyncio.create_task(file_all(rig, planned, poison, rate=rate, filing=filing))
    reviewers = asyncio.create_task(decide_escalations(rig, planned, timeout=deadline_s))
    try:
        await faults(striker)
        timings["faults"] = time.monotonic() - started
        left = deadline_s - (time.monotonic() - started)
        async with asyncio.timeout(max(left, 1.0)):
            await filer
            timings["filing"] = time.monotonic() - started
            await reviewers
        left = deadline_s - (time.monotonic() - started)
        await poll(
            lambda: all_terminal(rig, planned),
            timeout=max(left, 1.0),
            what="every submission to reach its outcome",
            explain=lambda: missing_outcomes(rig, planned),
            every=1.0,
        )
        timings["outcomes"] = time.monotonic() - started
        await poll(lambda: drained(rig), timeout=60, what="every outbox to drain")
        latest = await latest_versions(rig)
        await rig.follow_policies(suffix="-fresh")  # read the compacted feeds from their start

        async def enforced() -> bool:
            return all(applied(p.enforcer) == of_lab(latest, p.lab_id) for p in rig.enforcers)

        with contextlib.suppress(AssertionError):  # what each enforcer holds is the finding
            await poll(enforced, timeout=30, what="the enforcers to catch up")
        timings["drained"] = time.monotonic() - started
    finally:
        for task in (filer, reviewers):
            task.cancel()
        await asyncio.gather(filer, reviewers, return_exceptions=True)
    enforced_versions = {p.name: applied(p.enforcer) for p in rig.enforcers}
    for process in rig.processes():
        await process.stop()
    topics = {name: await read_all(rig, rig.topic(name)) for name in topic_names(rig)}
    tables = await snapshot_tables(rig)
    audit = await verify_audit(rig)
    timings["total"] = time.monotonic() - started
    return Run(
        rig,
        planned,
        poison,
        filing,
        striker.struck,
        topics,
        tables,
        enforced_versions,
        audit,
        timings,
    )


def decoded(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    """The records that are JSON objects, as parsed (poison and DLQ copies are skipped)."""
    found = []
    for record in records:
        try:
            document = json.loads(record.value or b"")
        except ValueError:
            continue
        if isinstance(document, dict):
            found.append(document)
    return found
