"""Fixtures: the demo model server (a real HTTP process), test topics, service settings, and
the ``rig`` that bundles them for the tests that start the service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from contracts import Event
from services.evaluation.app import build_service
from services.evaluation.settings import PACKAGE, EvaluationSettings
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from tests.conftest import NewTopic
from tests.evaluation.support import (
    CREDENTIAL_REF,
    DEMO_API_KEY,
    EventReader,
    demo_model_server,
    publish,
    publish_events,
)

SHIPPED_REGISTRY = PACKAGE / "suites" / "registry.yaml"


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    with demo_model_server() as url:
        yield url


@dataclass(frozen=True)
class Topics:
    intake: str
    findings: str
    evaluation: str


@pytest.fixture
async def topics(new_topic: NewTopic) -> Topics:
    return Topics(
        intake=await new_topic("intake"),
        findings=await new_topic("evaluators"),
        evaluation=await new_topic("evaluation"),
    )


@pytest.fixture
def eval_settings(
    settings: RuntimeSettings, schema: str, topics: Topics, tmp_path: Path
) -> EvaluationSettings:
    secrets = tmp_path / "secrets"
    (secrets / CREDENTIAL_REF).parent.mkdir(parents=True)
    (secrets / CREDENTIAL_REF).write_text(DEMO_API_KEY + "\n")
    return EvaluationSettings.model_validate(settings.model_dump()).model_copy(
        update=dict(
            db_schema=schema,
            intake_topic=topics.intake,
            external_findings_topic=topics.findings,
            evaluation_topic=topics.evaluation,
            inspect_log_dir=tmp_path / "inspect-logs",
            secrets_dir=secrets,
            lease_s=3.0,
            heartbeat_s=0.5,
            job_poll_interval_s=0.2,
            retry_backoff_s=0.2,
            retry_backoff_max_s=1.0,
            model_max_retries=0,
            model_request_timeout_s=30,
            worker_concurrency=2,
            otel_exporter="jsonl",
            otel_file=tmp_path / "traces.jsonl",
        )
    )


def registry_file(tmp_path: Path, **overrides: Any) -> Path:
    """The shipped registry, optionally cut down to some suites and with other limits."""
    document = yaml.safe_load(SHIPPED_REGISTRY.read_text())
    only = overrides.pop("only", None)
    if only is not None:
        document["suites"] = [s for s in document["suites"] if s["id"] in only]
    for suite in document["suites"]:
        suite.update(overrides)
    path = tmp_path / f"registry-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


StartService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_service() -> AsyncIterator[StartService]:
    """Start evaluation services (unique names: each has its own relay); stopped at the end."""
    started: list[Service] = []

    async def start(settings: EvaluationSettings, **kwargs: Any) -> Service:
        service = build_service(settings, name=f"test-eval-{uuid.uuid4().hex[:8]}", **kwargs)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@dataclass(frozen=True)
class EvalRig:
    """The fixtures a service test needs, and the one way such a test starts the service."""

    settings: EvaluationSettings  # the base settings (eval_settings)
    topics: Topics
    start_service: StartService
    demo_url: str
    database: str
    schema: str
    tmp_path: Path

    def configure(
        self,
        *,
        only: set[str] | None = None,
        worker: bool = True,
        suites: dict[str, Any] | None = None,
        **updates: Any,
    ) -> EvaluationSettings:
        """The base settings with ``updates``; ``only`` and ``suites`` (limits for every
        suite, e.g. max_attempts) cut down the shipped registry; ``worker`` False: no worker
        runs jobs inside the service."""
        if only is not None or suites:
            updates["suite_registry"] = registry_file(self.tmp_path, only=only, **(suites or {}))
        return self.settings.model_copy(update={"worker_enabled": worker, **updates})

    async def start(
        self,
        *,
        only: set[str] | None = None,
        worker: bool = True,
        suites: dict[str, Any] | None = None,
        **updates: Any,
    ) -> EvaluationSettings:
        """Start the service on ``configure(...)``; returns those settings."""
        settings = self.configure(only=only, worker=worker, suites=suites, **updates)
        await self.start_service(settings)
        return settings

    async def send_intake(self, *events: Event) -> None:
        await publish_events(self.settings.kafka_bootstrap, self.topics.intake, *events)

    async def send_findings(self, *records: tuple[str, bytes]) -> None:
        """Publish (key, value) records to the external findings topic, as they are."""
        await publish(self.settings.kafka_bootstrap, self.topics.findings, *records)

    def evaluation_reader(self) -> EventReader:
        return EventReader(self.settings.kafka_bootstrap, self.topics.evaluation)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


@pytest.fixture
def rig(
    eval_settings: EvaluationSettings,
    topics: Topics,
    start_service: StartService,
    demo_url: str,
    database: str,
    schema: str,
    tmp_path: Path,
) -> EvalRig:
    return EvalRig(eval_settings, topics, start_service, demo_url, database, schema, tmp_path)
