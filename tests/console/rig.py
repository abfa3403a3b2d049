"""A running console service (real Kafka + PostgreSQL) on its own topics and schema, fed
as the agency's services would feed it: events on the rig's prefixed topics, dead
letters with the runtime's headers, spans in a trace file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from contracts import CloudEvent, Event, encode, make_event
from contracts.registry import TOPIC_BY_NAME, subject_for, topic_for
from services.console.app import build_service
from services.console.settings import ConsoleSettings
from services.runtime import RuntimeSettings, Service
from services.runtime.database import connect
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from tests.kit import Producer, create_registry_topics, drop_schema, isolated, wait_for

SOURCES = {
    "intake": "/frontier-review/intake",
    "evaluation": "/frontier-review/evaluation",
    "risk": "/frontier-review/risk",
    "access": "/frontier-review/access",
}


def console_settings(base: RuntimeSettings, directory: Path, **extra: Any) -> ConsoleSettings:
    token = secrets.token_urlsafe(24)
    tokens = directory / "console-tokens"
    tokens.write_text(f"# console callers\n{token}\n")
    values: dict[str, Any] = {
        "http_port": 0,
        "console_tokens_file": tokens,
        "console_traces_file": directory / "traces.jsonl",
    }
    return isolated(base, ConsoleSettings, "console", **(values | extra))


@dataclass
class Rig:
    settings: ConsoleSettings
    service: Service
    producer: Producer
    letters: AIOKafkaProducer  # takes DLQ-sized records (2 MiB), as the relays' producers do
    token: str

    # what the agency's services publish --------------------------------------------------
    async def send(self, data: Event, *, traceparent: str | None = None) -> CloudEvent[Event]:
        topic = topic_for(type(data))
        event = make_event(
            data,
            source=SOURCES.get(topic.producer, "/test"),
            subject=subject_for(data),
            traceparent=traceparent,
        )
        await self.producer.send(self.settings.topic(topic.name), encode(event), event.subject)
        return event

    async def send_dead_letter(
        self,
        registry_topic: str,
        value: bytes,
        *,
        key: str | bytes | None,
        reason: str,
        error: str = "PermanentError: refused",
        consumer: str | None = None,
    ) -> None:
        """A record of ``registry_topic`` as the runtime dead-letters it (deadletter.py)."""
        reader = TOPIC_BY_NAME[registry_topic].readers[0]
        headers = {
            "content-type": "application/cloudevents+json",
            "dlq.reason": reason,
            "dlq.error": error,
            "dlq.consumer": consumer or f"{reader}.{registry_topic}",
            "dlq.attempts": "1",
            "dlq.origin.topic": self.settings.topic(registry_topic),
            "dlq.origin.partition": "0",
            "dlq.origin.offset": "17",
            "dlq.origin.timestamp": "1768478400000",
            "dlq.failed_at": "2026-01-15T12:00:00+00:00",
        }
        await self.letters.send_and_wait(
            self.settings.topic(f"{registry_topic}.dlq"),
            value,
            key=key.encode() if isinstance(key, str) else key,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )

    def write_spans(self, lines: list[str]) -> None:
        with self.settings.console_traces_file.open("a") as out:
            out.writelines(line + "\n" for line in lines)

    # what the console knows -----------------------------------------------------------------
    async def fetchval(self, query: str, *args: Any) -> Any:
        async with connect(self.settings) as conn:
            return await conn.fetchval(query, *args)

    async def until(
        self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = 30.0
    ) -> None:
        await wait_for(check, timeout=timeout, what=what)

    async def until_row(self, what: str, query: str, *args: Any, timeout: float = 30.0) -> None:
        async def found() -> bool:
            return bool(await self.fetchval(query, *args))

        await wait_for(found, timeout=timeout, what=what)

    # its pages ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.service.http_port is not None
        return f"http://127.0.0.1:{self.service.http_port}"

    async def get(self, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.get(path, headers=headers | kwargs.pop("headers", {}), **kwargs)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.request(method, path, **kwargs)


def token_of(settings: ConsoleSettings) -> str:
    assert settings.console_tokens_file is not None
    lines = settings.console_tokens_file.read_text().splitlines()
    return next(line for line in lines if line and not line.startswith("#"))


@contextlib.asynccontextmanager
async def running_rig(base: RuntimeSettings, directory: Path, **extra: Any) -> AsyncIterator[Rig]:
    settings = console_settings(base, directory, **extra)
    await create_registry_topics(settings)  # every topic and DLQ the console reads
    service = build_service(settings)
    await service.start()
    try:
        await wait_for(_bound(service), timeout=15, what="the console's HTTP port")
        letters = AIOKafkaProducer(
            **settings.kafka_options(), max_request_size=DLQ_MAX_MESSAGE_BYTES
        )
        await letters.start()
        try:
            async with Producer(settings) as producer:
                yield Rig(settings, service, producer, letters, token_of(settings))
        finally:
            await letters.stop()
    finally:
        await service.stop()
        await drop_schema(settings)


def _bound(service: Service) -> Callable[[], Awaitable[bool]]:
    async def bound() -> bool:
        return service.http_port is not None

    return bound


def cli_env(settings: ConsoleSettings, **overrides: str) -> Mapping[str, str]:
    """Environment for ``python -m services.console.cli`` reading the rig's schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FR_")}
    for name in ("FR_KAFKA_BOOTSTRAP", "FR_KAFKA_SECURITY_PROTOCOL", "FR_KAFKA_CA_FILE"):
        if name in os.environ:
            env[name] = os.environ[name]
    env |= {
        "FR_DATABASE_URL": settings.database_url,
        "FR_DB_SCHEMA": settings.db_schema,
        "FR_CONSOLE_TRACES_FILE": str(settings.console_traces_file),
        "COLUMNS": "220",
        "NO_COLOR": "1",
    }
    return env | overrides


async def run_cli(
    settings: ConsoleSettings, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m services.console.cli ARGS`` in a worker thread (the console under
    test serves from the test's event loop, which must keep running)."""
    return await asyncio.to_thread(_run_cli, settings, args, env or {})


def _run_cli(
    settings: ConsoleSettings, args: tuple[str, ...], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.console.cli", *args],
        env=dict(cli_env(settings)) | dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
