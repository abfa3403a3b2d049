"""A running evaluation (real Kafka, PostgreSQL, Inspect and the demo model over HTTP)
with its own topics, schema, secrets and Inspect directories, fed by a real intake.

Submissions reach evaluation as they do in production: the example lab signs a
SubmissionFiled with its registered key and files it on lab.submissions with the
lab client, the rig's intake (an in-process intake service on the same topics)
accepts it and its relay publishes SubmissionAccepted on intake.events. A
withdrawal is the lab's signed request; a window closes when intake's review
clock (an injected ``MovableClock``) passes its deadline. Only the tests of
evaluation's own defences against a bad SubmissionAccepted write intake.events
themselves, as a compromised intake would (``publish_as_compromised_intake``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import yaml

from contracts import ContractViolation, Event, decode, encode, make_event
from contracts.events import (
    EvaluationStarted,
    ExternalFindingRejected,
    ReviewWindowClosed,
    SubmissionAccepted,
)
from contracts.principals import Role
from contracts.registry import subject_for
from services.evaluation import repository
from services.evaluation.app import SCHEMA, build_service, build_worker
from services.evaluation.model import Assignment
from services.evaluation.settings import PACKAGE, EvaluationSettings
from services.intake.app import SCHEMA as INTAKE_SCHEMA
from services.intake.app import build_service as build_intake
from services.intake.settings import IntakeSettings
from services.labclient import LabClient
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from services.trust import registry
from services.trust.endpoints import Resolver
from services.trust.principals import EVALUATOR, LAB, PrincipalKey
from tests.contracts.examples import (
    EVALUATOR_ID,
    EXAMPLE_KEY,
    EXAMPLE_KEY_ID,
    LAB_ID,
    example,
    example_public_key,
)
from tests.kit import (
    MovableClock,
    Producer,
    TopicWatcher,
    create_feeds,
    create_registry_topics,
    drop_schema,
    free_port,
    isolated,
    lab_settings,
    process_env,
)
from tests.kit.manifests import manifest

SHIPPED_REGISTRY = PACKAGE / "suites" / "registry.yaml"
DEMO_API_KEY = "demo-lab-secret-7f3a9c"  # what the secret store holds; must never leak
CREDENTIAL_REF = f"labs/{LAB_ID}/eval-api-key"  # the submitting (example) lab's own secret
TOPICS = (
    "lab.submissions",
    "intake.events",
    "intake.registry",
    "evaluators.findings",
    "evaluation.events",
)


# --- the demo lab model server ------------------------------------------------------------


@contextlib.contextmanager
def demo_model_server(api_key: str = DEMO_API_KEY) -> Iterator[str]:
    """The demo lab model server as a real process; yields its /v1 base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.evaluation.demo_model", "--port", str(port)],
        env=os.environ | {"DEMO_LAB_API_KEY": api_key},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the demo model server did not start") from None
                time.sleep(0.1)
        yield f"{base}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def demo_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=2) as response:
        stats: dict[str, Any] = json.loads(response.read())
        return stats


def request_counts(base_url: str) -> dict[str, int]:
    counts: dict[str, int] = demo_stats(base_url)["requests"]
    return counts


def presented_to(base_url: str, secret: str) -> bool:
    """Whether ``secret`` was ever sent to the demo server as a bearer token."""
    return hashlib.sha256(secret.encode()).hexdigest() in demo_stats(base_url)["bearer_sha256"]


# --- processes ------------------------------------------------------------------------------


def process_state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return int(fields["PPid"]), fields["State"].strip()[:1]


def inspect_children(parent: int) -> list[int]:
    """Live Inspect processes started by ``parent`` (a worker process, or this one)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        state = process_state(int(proc.name))
        if (
            b"services.evaluation.inspect_process" in cmdline
            and state is not None
            and state[0] == parent
            and state[1] != "Z"
        ):
            found.append(int(proc.name))
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie has stopped: it only awaits reaping)."""
    return [pid for pid in pids if (state := process_state(pid)) and state[1] != "Z"]


# --- submissions, as the lab files them and intake accepts them -----------------------------


@dataclass
class Filing:
    """A submission the example lab files (its manifest), and intake's acceptance of it
    once the rig filed it (``EvalRig.file``)."""

    manifest: dict[str, Any]
    accepted: SubmissionAccepted | None = None

    @property
    def submission_id(self) -> UUID:
        return UUID(self.manifest["submission_id"])

    @property
    def acceptance(self) -> SubmissionAccepted:
        if self.accepted is None:
            raise AssertionError(f"{self.submission_id} was not filed yet (rig.file)")
        return self.accepted

    @property
    def model_id(self) -> str:
        return self.acceptance.model_id

    @property
    def deadline(self) -> datetime:
        return self.acceptance.deadline


def filing(
    base_url: str,
    profile: str,
    *,
    modalities: list[str] | None = None,
    credential_ref: str = CREDENTIAL_REF,
    review_days: int = 14,
) -> Filing:
    """The example lab's manifest for a model served at ``base_url`` as ``profile``
    (a model version of its own, so every filing is a model of its own)."""
    document = manifest(
        LAB_ID,
        model={"modalities": modalities or ["text"], "version": f"v-{uuid.uuid4().hex[:8]}"},
        evaluation_access={
            "endpoint": base_url,
            "api_model": profile,
            "credential_ref": credential_ref,
        },
        requested_review_days=review_days,
    )
    return Filing(document)


def forged_acceptance(
    base_url: str,
    profile: str,
    *,
    credential_ref: str = CREDENTIAL_REF,
    review_days: int = 14,
) -> SubmissionAccepted:
    """A SubmissionAccepted intake would never publish (another lab's credential, an
    endpoint intake refuses): what a compromised intake could send."""
    now = datetime.now(UTC)
    base = example(SubmissionAccepted).model_dump(mode="json")
    base["model"]["modalities"] = ["text"]
    return SubmissionAccepted.model_validate(
        base
        | {
            "submission_id": str(uuid.uuid4()),
            "evaluation_access": {
                "endpoint": base_url,
                "api_model": profile,
                "credential_ref": credential_ref,
            },
            "requested_review_days": review_days,
            "review_days": review_days,
            "accepted_at": now,
            "deadline": now + timedelta(days=review_days),
        }
    )


# --- settings ---------------------------------------------------------------------------------


def registry_file(
    directory: Path, suites: list[dict[str, Any]] | None = None, **limits: Any
) -> Path:
    """The shipped registry, optionally cut down (``only``: suite ids), with ``suites``
    added and ``limits`` (e.g. max_attempts) set on every suite."""
    document = yaml.safe_load(SHIPPED_REGISTRY.read_text())
    only = limits.pop("only", None)
    if only is not None:
        document["suites"] = [s for s in document["suites"] if s["id"] in only]
    document["suites"] += suites or []
    for suite in document["suites"]:
        suite.update(limits)
    path = directory / f"registry-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def suite_entry(suite_id: str, task: str, **fields: Any) -> dict[str, Any]:
    """A registry entry for a task of tests/evaluation/tasks.py."""
    return {
        "id": suite_id,
        "version": "1.0.0",
        "domain": "cyber",
        "capability": "test",
        "task": task,
        "timeout_seconds": 60,
        "max_attempts": 1,
        "modalities": ["text"],
        "description": "TEST TASK",
    } | fields


def endpoint_of(base_url: str) -> str:
    """The ``host:port`` of a URL: what the endpoint allowlist names."""
    return urlsplit(base_url).netloc


def evaluation_settings(base: RuntimeSettings, directory: Path, **extra: Any) -> EvaluationSettings:
    """Settings of one rig: its own name, schema, topics, secrets and Inspect directories,
    short leases and backoffs (``extra``: e.g. the endpoint allowlist)."""
    secrets = directory / "secrets"
    (secrets / CREDENTIAL_REF).parent.mkdir(parents=True)
    (secrets / CREDENTIAL_REF).write_text(DEMO_API_KEY + "\n")
    runs = directory / "inspect-runs"
    values: dict[str, Any] = {
        "evaluation_inspect_log_dir": directory / "inspect-logs",
        "evaluation_run_dir": runs,
        "evaluation_secrets_dir": secrets,
        "evaluation_lease_s": 3.0,
        "evaluation_heartbeat_s": 0.5,
        "evaluation_job_poll_interval_s": 0.2,
        "evaluation_retry_backoff_s": 0.2,
        "evaluation_retry_backoff_max_s": 1.0,
        "evaluation_model_max_retries": 0,
        "evaluation_model_request_timeout_s": 30,
        "evaluation_worker_concurrency": 2,
        "http_port": None,  # a test that scrapes asks for a port of its own
        "otel_exporter": "jsonl",
        "otel_file": directory / "traces.jsonl",
    }
    return isolated(base, EvaluationSettings, "evaluation", **(values | extra))


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def evaluation_cli(settings: EvaluationSettings, *args: str) -> Ran:
    """``python -m services.evaluation.cli ARGS`` as an operator runs it, with ``settings``
    (without blocking the services this test runs in its event loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.evaluation.cli",
        *args,
        env=process_env(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


# --- the rig ----------------------------------------------------------------------------------


@dataclass
class EvalRig:
    """A test's evaluation: settings, what it started, and how it talks to the service."""

    settings: EvaluationSettings  # the base settings
    base: RuntimeSettings  # the session's settings, which the rig's intake derives from
    demo_url: str
    directory: Path
    producer: Producer
    events: TopicWatcher  # evaluation.events, from the beginning
    intake_events: TopicWatcher  # intake.events, from the beginning
    lab: LabClient  # the example lab, registered with the rig's intake
    # An allowlisted endpoint on which nothing listens (an unreachable lab model).
    nobody_home_url: str = field(default_factory=lambda: f"http://127.0.0.1:{free_port()}/v1")
    services: list[Service] = field(default_factory=list)
    intake: Service | None = None
    intake_clock: MovableClock = field(default_factory=MovableClock)

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def configure(
        self,
        *,
        only: set[str] | None = None,
        worker: bool = True,
        suites: dict[str, Any] | None = None,
        extra_suites: list[dict[str, Any]] | None = None,
        **updates: Any,
    ) -> EvaluationSettings:
        """The base settings with ``updates``; ``only`` and ``suites`` (limits for every
        suite, e.g. max_attempts) cut down the shipped registry, ``extra_suites`` are
        added to it; ``worker`` False: no worker runs jobs inside the service."""
        if only is not None or suites or extra_suites:
            updates["evaluation_suite_registry"] = registry_file(
                self.directory, extra_suites, only=only, **(suites or {})
            )
        return self.settings.model_copy(update={"evaluation_worker_enabled": worker, **updates})

    async def start_service(self, settings: EvaluationSettings, **kwargs: Any) -> Service:
        service = build_service(settings, **kwargs)
        await service.start()
        self.services.append(service)
        return service

    async def start_worker(self, settings: EvaluationSettings, **kwargs: Any) -> Service:
        """A worker-only service in this process (its own service name: its own sessions)."""
        named = settings.model_copy(update={"service_name": f"{settings.service_name}-worker"})
        service = build_worker(named, **kwargs)
        await service.start()
        self.services.append(service)
        return service

    async def stop_service(self, service: Service) -> None:
        self.services.remove(service)
        await service.stop()

    async def start(self, **configuration: Any) -> EvaluationSettings:
        """Start the service on ``configure(...)``; returns those settings."""
        settings = self.configure(**configuration)
        await self.start_service(settings)
        return settings

    # intake ------------------------------------------------------------------------------
    async def start_intake(
        self, *, allow: Sequence[str] = (), resolver: Resolver | None = None
    ) -> Service:
        """The rig's intake on the rig's topics, with the example lab registered: its
        endpoint allowlist names the demo server, ``nobody_home_url`` and ``allow``
        (URLs), ``resolver`` answers its endpoint checks' DNS lookups. ``file`` starts
        it with the defaults when a test did not."""
        assert self.intake is None, "the rig's intake is already running"
        allowlist = [endpoint_of(u) for u in (self.demo_url, self.nobody_home_url, *allow)]
        settings = isolated(
            self.base,
            IntakeSettings,
            "intake",
            topic_prefix=self.settings.topic_prefix,
            principal_prefix=self.settings.principal_prefix,
            http_port=None,
            intake_endpoint_allowlist=allowlist,
        )
        async with connect(settings, INTAKE_SCHEMA) as conn:
            now = datetime.now(UTC)
            assert await registry.register(conn, LAB, LAB_ID, "Example Lab", now) is None
            key = PrincipalKey(
                LAB.name, LAB_ID, EXAMPLE_KEY_ID, example_public_key(), now, None, None
            )
            assert await registry.add_key(conn, LAB, key, now) is None
        intake = build_intake(settings, clock=self.intake_clock, resolver=resolver)
        await intake.start()
        self.intake = intake
        return intake

    async def file(self, *filings: Filing) -> list[SubmissionAccepted]:
        """The lab signs and files each manifest; intake accepts it and publishes
        SubmissionAccepted, which evaluation consumes. Waits for each acceptance."""
        if self.intake is None:
            await self.start_intake()
        for each in filings:
            sent = await self.lab.submit(each.manifest)
            answer = await self.lab.outcome(sent)
            assert answer.status == "accepted", f"intake answered {answer.summary}"
            each.accepted = await self.acceptance(each.submission_id)
        return [each.acceptance for each in filings]

    async def acceptance(self, submission_id: UUID) -> SubmissionAccepted:
        """Intake's SubmissionAccepted of ``submission_id``, once it is on intake.events."""
        watcher = self.intake_events
        await watcher.wait(
            lambda: bool(watcher.of(submission_id, SubmissionAccepted)), what="the acceptance"
        )
        [found] = watcher.of(submission_id, SubmissionAccepted)
        return found  # type: ignore[no-any-return]

    async def withdraw(self, submission: Filing) -> None:
        """The lab's signed withdrawal; intake answers it with SubmissionWithdrawn."""
        sent = await self.lab.withdraw(submission.submission_id, "test")
        answer = await self.lab.outcome(sent)
        assert answer.status == "withdrawn", f"intake answered {answer.summary}"

    async def pass_deadline(self, submission: Filing) -> None:
        """Move intake's review clock past the submission's deadline."""
        ahead = submission.deadline - self.intake_clock.now()
        self.intake_clock.advance(ahead.total_seconds() + 1)

    async def close_window(self, submission: Filing) -> None:
        """Intake's review clock passes the deadline; intake's timer closes the window
        (ReviewWindowClosed on intake.events)."""
        await self.pass_deadline(submission)
        watcher = self.intake_events
        sid = submission.submission_id
        await watcher.wait(
            lambda: bool(watcher.of(sid, ReviewWindowClosed)), what="intake to close the window"
        )

    async def redeliver(self, submission: Filing) -> None:
        """Intake's very record of the acceptance, delivered again (as after its relay
        died between publishing and marking the row)."""
        watcher = self.intake_events
        found = []
        for record in watcher.records:
            try:
                event = decode(record.value or b"", watcher.event_types)
            except ContractViolation:
                continue
            if (
                isinstance(event.data, SubmissionAccepted)
                and event.data.submission_id == submission.submission_id
            ):
                found.append(record)
        [record] = found
        key = str(submission.submission_id)
        await self.producer.send(self.topic("intake.events"), record.value or b"", key)

    async def publish_as_compromised_intake(self, *events: Event) -> None:
        """Events no genuine intake publishes, written onto intake.events with intake's
        own connection, as a compromised intake would: only for the tests of evaluation's
        defences against a bad SubmissionAccepted. (In a deployment only intake's
        principal may write intake.events: tests/security/test_lab_isolation.py; in the
        rig, intake and this producer run as the test principal.)"""
        for data in events:
            subject = subject_for(data)
            record = encode(make_event(data, source="/frontier-review/intake", subject=subject))
            await self.producer.send(self.topic("intake.events"), record, subject)

    async def send_findings(self, *records: tuple[str, bytes]) -> None:
        """(key, value) records on evaluators.findings, as they are."""
        for key, value in records:
            await self.producer.send(self.topic("evaluators.findings"), value, key)

    async def connect(self) -> asyncpg.Connection[asyncpg.Record]:
        return await asyncpg.connect(
            self.settings.database_url, server_settings={"search_path": self.schema}
        )

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await self.connect()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def running_rig(
    base: RuntimeSettings, demo_url: str, directory: Path
) -> AsyncIterator[EvalRig]:
    # The demo lab server listens on loopback: only the allowlist lets the worker reach it.
    settings = evaluation_settings(
        base, directory, evaluation_endpoint_allowlist=[endpoint_of(demo_url)]
    )
    await create_registry_topics(settings, *TOPICS)
    await create_feeds(settings, Role.LAB, LAB_ID)  # what registering the lab provisions
    rig: EvalRig | None = None
    try:
        async with (
            Producer(settings) as producer,
            TopicWatcher(settings, settings.topic("evaluation.events")) as events,
            TopicWatcher(settings, settings.topic("intake.events")) as intake_events,
            LabClient(
                lab_id=LAB_ID,
                key_id=EXAMPLE_KEY_ID,
                key=EXAMPLE_KEY,
                settings=lab_settings(settings, LAB_ID),
            ) as lab,
        ):
            rig = EvalRig(settings, base, demo_url, directory, producer, events, intake_events, lab)
            try:
                yield rig
            finally:
                for service in reversed(rig.services):
                    await service.stop()
                if rig.intake is not None:
                    await rig.intake.stop()
                    await drop_schema(rig.intake.settings)
    finally:
        await drop_schema(settings)


async def evaluation_started(rig: EvalRig, sid: UUID) -> None:
    """Intake and findings are different topics: wait until the submission is known."""
    await rig.events.wait(lambda: bool(rig.events.of(sid, EvaluationStarted)), what="planning")


def rejections(reader: TopicWatcher) -> list[ExternalFindingRejected]:
    """Every ExternalFindingRejected so far (an unauthenticated one is keyed by its event)."""
    return [e.data for e in reader.events() if isinstance(e.data, ExternalFindingRejected)]


# --- the operator's registry ------------------------------------------------------------------


async def register_example_key(rig: EvalRig) -> None:
    """The example evaluator and its key (tests.contracts.examples signs with it), as
    ``cli evaluators register`` and ``evaluators key add`` register them."""
    now = datetime.now(UTC)
    key = PrincipalKey(
        EVALUATOR.name, EVALUATOR_ID, EXAMPLE_KEY_ID, example_public_key(), now, None, None
    )
    await create_feeds(rig.settings, Role.EVALUATOR, EVALUATOR_ID)  # as registering provisions
    async with connect(rig.settings, SCHEMA) as conn:
        assert (
            await registry.register(conn, EVALUATOR, EVALUATOR_ID, "Example red team", now) is None
        )
        assert await registry.add_key(conn, EVALUATOR, key, now) is None


async def assign(rig: EvalRig, evaluator_id: str, submission_id: UUID) -> None:
    """What ``cli evaluators assign`` does."""
    async with connect(rig.settings, SCHEMA) as conn:
        assignment = Assignment(evaluator_id, submission_id, datetime.now(UTC), "test")
        assert await repository.assign(conn, assignment)


async def unassign(rig: EvalRig, evaluator_id: str, submission_id: UUID) -> None:
    async with connect(rig.settings, SCHEMA) as conn:
        assert await repository.unassign(conn, evaluator_id, submission_id)
