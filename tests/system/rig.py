"""The whole system on the real stack: the four services as OS processes, labs that file
signed submissions, reviewers, and each lab's enforcer following its policy feed.

Every service runs as ``python -m services.<name>`` (so a test can SIGKILL it), with
settings passed as ``FR_*`` variables: one topic prefix for the whole rig
(``test.<suffix>.``: topics, consumer groups, transactional ids, which the test
principal's ACLs cover) and a schema per service (``test_<service>_<suffix>``). The
rig registers its labs (intake's trust registry, their feeds), its reviewers (risk's
registry, their feeds) and the demo lab model's secret, then starts the services.

What is real: the broker (SASL_SSL, ACLs), PostgreSQL, the four services' code, the
labs' signatures, Inspect runs of the demo lab model over HTTP, the enforcers (the lab
client's PolicyFeed + Enforcer in this process). What is made small: the suite
registry (``registry_file``: the one-sample cyber proxy of tests/system/suites.py, or
a cut of the shipped registry), and time (``seconds_per_day``: a review "day" lasts
seconds). Every process connects as the test principal (the rig's names are all under
``test.``); tests/security checks the per-service principals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.sdk.trace import TracerProvider

from contracts.policy import Principal
from contracts.principals import Role
from services.access.app import MIGRATIONS as ACCESS_MIGRATIONS
from services.access.settings import AccessSettings
from services.evaluation.settings import PACKAGE, EvaluationSettings
from services.intake.settings import IntakeSettings
from services.labclient import LabClient
from services.labclient.enforcer import Enforcer
from services.labclient.feed import PolicyFeed
from services.risk import keys
from services.risk.settings import RiskSettings
from services.runtime import RuntimeSettings
from services.runtime.database import connect
from services.trust import TRUST_SQL
from tests.evaluation.rig import endpoint_of
from tests.kit import create_feeds, create_registry_topics, drop_schema, isolated, lab_settings
from tests.kit.lab_registry import register_lab
from tests.risk.rig import Reviewer, register_reviewers
from tests.system.suites import TASK_REF

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "evaluation", "risk", "access")
SHIPPED_REGISTRY = PACKAGE / "suites" / "registry.yaml"
DEMO_API_KEY = "demo-lab-secret-system"  # what the rig's secret store holds for every lab
STARTED_LINE = "started successfully"  # FastStream's log line once the app runs


# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSettings:
    """The settings of each service of one rig: one topic prefix, a schema each."""

    intake: IntakeSettings
    evaluation: EvaluationSettings
    risk: RiskSettings
    access: AccessSettings

    def of(self, name: str) -> RuntimeSettings:
        settings: RuntimeSettings = getattr(self, name)
        return settings

    @property
    def all(self) -> tuple[RuntimeSettings, ...]:
        return tuple(self.of(name) for name in SERVICES)

    def topic(self, name: str) -> str:
        return self.intake.topic(name)


def registry_file(directory: Path, *, shipped: Iterable[str] = ()) -> Path:
    """The suite registry of a rig: the shipped suites named in ``shipped`` (as they ship),
    or, when none is named, the one-sample cyber proxy alone."""
    if shipped:
        document = yaml.safe_load(SHIPPED_REGISTRY.read_text())
        wanted = set(shipped)
        document["suites"] = [s for s in document["suites"] if s["id"] in wanted]
        document["registry_version"] = f"{document['registry_version']}-system-test"
    else:
        document = {
            "registry_version": "system-test-1",
            "suites": [
                {
                    "id": "cyber-ctf-proxy-one",
                    "version": "1.0.0",
                    "domain": "cyber",
                    "capability": "vulnerability-discovery",
                    "task": TASK_REF,
                    "timeout_seconds": 120,
                    "max_attempts": 5,
                    "modalities": ["text"],
                    "description": "BENIGN PROXY: the first puzzle of the shipped cyber proxy.",
                }
            ],
        }
    path = directory / "suite-registry.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def system_settings(
    base: RuntimeSettings,
    directory: Path,
    demo_url: str,
    *,
    seconds_per_day: float,
    traced: bool = False,
    suites: Path | None = None,
    **common: Any,
) -> SystemSettings:
    """One rig's settings. ``traced``: every service writes its spans, SQL statements
    included, to ``<directory>/traces-<service>.jsonl``. ``common`` overrides any runtime
    setting of every service."""
    suffix = uuid.uuid4().hex[:8]
    demo = endpoint_of(demo_url)
    shared: dict[str, Any] = {
        "topic_prefix": f"test.{suffix}.",
        "principal_prefix": f"test-{suffix}.",
        "http_port": None,
        "log_level": "INFO",
        "timer_poll_s": 0.2,
        "relay_poll_interval_s": 0.2,
        "handler_retry_backoff_s": 0.05,
        "transient_retry_s": 0.5,
        "graceful_timeout_s": 5.0,
        "otel_exporter": "jsonl" if traced else "none",
        "otel_db_statements": traced,
    }

    def make(kind: type[Any], name: str, **extra: Any) -> Any:
        values = shared | {
            "db_schema": f"test_{name}_{suffix}",
            "otel_file": directory / f"traces-{name}.jsonl",
        }
        return isolated(base, kind, name, **(values | extra | common))

    secrets = directory / "secrets"
    secrets.mkdir(mode=0o700)
    return SystemSettings(
        intake=make(
            IntakeSettings,
            "intake",
            intake_endpoint_allowlist=[demo],
            intake_seconds_per_day=seconds_per_day,
            max_message_bytes=64_000,
        ),
        evaluation=make(
            EvaluationSettings,
            "evaluation",
            evaluation_suite_registry=suites or registry_file(directory),
            evaluation_endpoint_allowlist=[demo],
            evaluation_inspect_log_dir=directory / "inspect-logs",
            evaluation_run_dir=directory / "inspect-runs",
            evaluation_secrets_dir=secrets,
            evaluation_lease_s=4.0,
            evaluation_heartbeat_s=0.5,
            evaluation_job_poll_interval_s=0.2,
            evaluation_retry_backoff_s=0.2,
            evaluation_retry_backoff_max_s=1.0,
            evaluation_model_max_retries=0,
            evaluation_model_request_timeout_s=30,
            evaluation_worker_concurrency=2,
        ),
        risk=make(
            RiskSettings,
            "risk",
            risk_service_key_file=directory / "risk-audit.pem",
            risk_service_key_id="risk-system-1",
            risk_seconds_per_day=seconds_per_day,
            risk_checkpoint_interval_s=5.0,
        ),
        access=make(AccessSettings, "access"),
    )


def process_env(settings: RuntimeSettings, **extra: str) -> dict[str, str]:
    """The environment of a service (or CLI) process with ``settings``: every setting as
    its ``FR_*`` variable, over this process's environment."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        variable = f"FR_{name.upper()}"
        if value is None:
            env[variable] = "none"
        elif value == "none":
            # The string "none" in a variable reads as None (env_parse_none_str), which a
            # field like otel_exporter refuses: left unset, the field keeps its default.
            env.pop(variable, None)
        elif isinstance(value, list | dict):
            env[variable] = json.dumps(value)
        else:
            env[variable] = str(value)
    return env | {"FR_LOG_JSON": "false"} | extra


# --- processes --------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """One replica of a service: ``python -m services.<name>``, its log in a file."""

    name: str
    settings: RuntimeSettings
    log_file: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        log = self._open_log()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{self.settings.service_name}",
                cwd=ROOT,
                env=process_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()

    def _open_log(self) -> BinaryIO:
        self.starts += 1
        log = self.log_file.open("ab")
        log.write(f"\n=== start {self.starts} at {datetime.now(UTC)} ===\n".encode())
        log.flush()
        return log

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def ready(self, *, timeout: float = 90.0) -> None:
        """Wait until this start logged that the app runs (or fail with its log)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            current = self.log_text().rsplit(f"=== start {self.starts} at", 1)[-1]
            if STARTED_LINE in current:
                return
            if not self.running():
                raise AssertionError(f"{self.name} exited at start:\n{self.tail()}")
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} not started after {timeout} s:\n{self.tail()}")
            await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what a crash or an OOM kill does."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self._reaped(10.0)

    async def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await self._reaped(timeout)
        except TimeoutError:
            self.process.send_signal(signal.SIGKILL)
            await self._reaped(10.0)

    async def _reaped(self, timeout: float) -> None:
        assert self.process is not None
        await asyncio.wait_for(self.process.wait(), timeout)


# --- tenants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    """A lab as it holds itself: id, key id, private key; its secret is in the rig's store."""

    lab_id: str
    key_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def credential_ref(self) -> str:
        return f"labs/{self.lab_id}/eval-api-key"


async def register_labs(system: SystemSettings, labs: Iterable[Lab]) -> None:
    """What registering a lab does: its feeds, its registry entry and key in intake's
    schema (``intake.cli lab register`` / ``key add``, each with the lab's entry on
    intake's outbox, which intake's relay publishes on intake.registry for access), and
    its evaluation secret."""
    labs = list(labs)
    await create_feeds(system.intake, Role.LAB, *(lab.lab_id for lab in labs))
    now = datetime.now(UTC)
    for lab in labs:
        public = lab.key.public_key().public_bytes_raw()
        await register_lab(
            system.intake, lab.lab_id, [(lab.key_id, public)], now, name=lab.lab_id.title()
        )
    secrets = system.evaluation.evaluation_secrets_dir
    for lab in labs:
        path = secrets / lab.credential_ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEMO_API_KEY + "\n")


def foreign_national() -> Principal:
    """An unverified citizen of a country of the interim order's group."""
    return Principal.model_validate(
        {
            "id": "customer-cn",
            "citizenships": [{"country": "CN", "acquired_on": date(1990, 1, 1).isoformat()}],
            "permanent_residencies": [],
            "residence_country": "CN",
            "us_person": "none",
            "verification": {"status": "unverified"},
            "organisation": "none",
        }
    )


# --- the rig ----------------------------------------------------------------------------


@dataclass
class EnforcementPoint:
    """A lab's enforcer and the reader that follows its policy feed into it."""

    name: str
    lab_id: str
    enforcer: Enforcer
    feed: PolicyFeed


@dataclass
class SystemRig:
    settings: SystemSettings
    directory: Path
    demo_url: str
    labs: dict[str, Lab]
    reviewers: dict[str, Reviewer]
    replicas: dict[str, list[ServiceProcess]]
    enforcers: list[EnforcementPoint] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def processes(self) -> list[ServiceProcess]:
        return [p for name in SERVICES for p in self.replicas[name]]

    def lab_client(
        self, lab_id: str, *, tracer_provider: TracerProvider | None = None
    ) -> LabClient:
        lab = self.labs[lab_id]
        return LabClient(
            lab_id=lab.lab_id,
            key_id=lab.key_id,
            key=lab.key,
            settings=lab_settings(self.settings.intake, lab.lab_id),
            tracer_provider=tracer_provider,
        )

    def manifest(
        self,
        lab_id: str,
        *,
        profile: str = "capable",
        modalities: Iterable[str] = ("text",),
        review_days: int = 30,
        compute: float = 3.2e26,
        submission_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """A covered model (by compute, unless ``compute`` says otherwise) of ``lab_id``
        whose evaluation endpoint is the demo lab model server, ``profile`` its model."""
        sid = submission_id or uuid.uuid4()
        return {
            "submission_id": str(sid),
            "lab_id": lab_id,
            "model": {
                "name": f"model-{sid.hex[:12]}",
                "version": "1.0.0",
                "family": "System",
                "modalities": list(modalities),
                "training_compute_flop": compute,
                "planned_release_date": "2030-01-01",
                "deployment_channels": ["api"],
                "declared_capabilities": [],
            },
            "evaluation_access": {
                "endpoint": self.demo_url,
                "api_model": profile,
                "credential_ref": self.labs[lab_id].credential_ref,
            },
            "requested_review_days": review_days,
            "contacts": [{"name": "Ada System", "email": "ada@lab.test", "role": "primary"}],
        }

    async def start(self, *, timeout: float = 120.0) -> None:
        for process in self.processes():
            await process.start()
        await asyncio.gather(*(p.ready(timeout=timeout) for p in self.processes()))

    async def follow_policies(
        self, *, suffix: str = "", kind: type[Enforcer] = Enforcer
    ) -> list[EnforcementPoint]:
        """A new enforcement point per lab (an enforcer of ``kind``), following its policy
        feed from the start."""
        started = []
        for lab_id in self.labs:
            enforcer = kind(lab_id=lab_id)
            feed = PolicyFeed(enforcer, lab_settings(self.settings.intake, lab_id))
            await feed.__aenter__()
            started.append(EnforcementPoint(f"{lab_id}{suffix}", lab_id, enforcer, feed))
        self.enforcers += started
        return started

    async def connect(self, service: str) -> asyncpg.Connection[asyncpg.Record]:
        """A connection to ``service``'s schema (reads its tables as the service does)."""
        settings = self.settings.of(service)
        return await asyncpg.connect(
            settings.database_url, server_settings={"search_path": settings.db_schema}
        )

    async def fetch(self, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self.connect(service)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def fetchval(self, service: str, query: str, *args: Any) -> Any:
        conn = await self.connect(service)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    def logs(self) -> str:
        """Every replica's log tail: what a failing test prints."""
        return "\n\n".join(
            f"--- {p.name} (pid {p.pid}, {p.starts} starts) ---\n{p.tail(60)}"
            for p in self.processes()
        )

    async def close(self) -> None:
        """Stop the enforcers' feeds and the services. A feed that died is reported, not
        raised: it must not hide why the test is closing the rig."""
        for point in self.enforcers:
            try:
                await point.feed.stop()
            except Exception as exc:
                print(f"enforcer {point.name}: its policy feed had ended with {exc!r}")
        await asyncio.gather(*(p.stop() for p in self.processes()))


@contextlib.asynccontextmanager
async def running_system(
    base: RuntimeSettings,
    directory: Path,
    demo_url: str,
    *,
    labs: Iterable[Lab],
    seconds_per_day: float,
    replicas: int = 1,
    traced: bool = False,
    suites: Path | None = None,
    partitions: int | None = None,
) -> AsyncIterator[SystemRig]:
    """The rig, its services started (``replicas`` of each, same schema and groups);
    ``partitions``: every partitioned topic of the registry gets that many partitions
    instead of the registry's."""
    settings = system_settings(
        base, directory, demo_url, seconds_per_day=seconds_per_day, traced=traced, suites=suites
    )
    await create_registry_topics(settings.intake, partitions=partitions)
    labs_by_id = {lab.lab_id: lab for lab in labs}
    await register_labs(settings, labs_by_id.values())
    keys.generate(settings.risk.risk_service_key_file)
    reviewers = await register_reviewers(settings.risk, directory)
    # Access's trust tables exist from the start (it fills them from intake.registry).
    async with connect(settings.access, [TRUST_SQL, ACCESS_MIGRATIONS]):
        pass
    logs = directory / "logs"
    logs.mkdir()
    rig = SystemRig(
        settings,
        directory,
        demo_url,
        labs_by_id,
        reviewers,
        {
            name: [
                ServiceProcess(f"{name}-{n}", settings.of(name), logs / f"{name}-{n}.log")
                for n in range(1, replicas + 1)
            ]
            for name in SERVICES
        },
    )
    try:
        await rig.start()
        yield rig
    finally:
        await rig.close()
        for service in settings.all:
            await drop_schema(service)
        await delete_topics(settings.intake)


async def delete_topics(settings: RuntimeSettings) -> None:
    """Delete every topic under the rig's prefix: a broker that keeps every rig's
    topics takes ever longer to restart (and the fault test restarts it)."""
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            await admin.delete_topics(names, timeout_ms=60_000)
    finally:
        await admin.close()
