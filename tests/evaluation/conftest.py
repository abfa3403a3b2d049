"""Fixtures: the demo model server (a real HTTP process), test topics, service settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.evaluation.app import build_service
from services.evaluation.settings import PACKAGE, EvaluationSettings
from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings
from tests.conftest import NewTopic
from tests.evaluation.support import CREDENTIAL_REF, DEMO_API_KEY, demo_model_server

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
