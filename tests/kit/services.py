"""Running services in tests: isolated settings, start/stop, schemas, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg

from services.runtime.service import Service
from services.runtime.settings import RuntimeSettings

S = TypeVar("S", bound=RuntimeSettings)

NewTopic = Callable[..., Awaitable[str]]  # the ``new_topic`` fixture
StartService = Callable[[Service], Awaitable[Service]]  # the ``start`` fixture


def isolated(base: RuntimeSettings, kind: type[S], name: str, **extra: Any) -> S:
    """``kind`` settings for one rig: its own schema and Kafka prefix (topics, consumer
    groups, transactional ids under ``test.<suffix>.``, which the test principal's ACLs
    cover), so rigs never share groups, tables or topics; the service keeps its name.
    Tenants a rig's CLI registers get principals named ``test-<suffix>.<role>.<id>``,
    never a deployment's names."""
    suffix = uuid.uuid4().hex[:8]
    values = base.model_dump() | {
        "service_name": name,
        "db_schema": f"test_{name.replace('-', '_')}_{suffix}",
        "topic_prefix": f"test.{suffix}.",
        "principal_prefix": f"test-{suffix}.",
        "tenant_credentials_dir": base.tenant_credentials_dir / "test",
        "log_json": False,
    }
    return kind(**(values | extra))


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def drop_schema(settings: RuntimeSettings, schema: str | None = None) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema or settings.db_schema}" CASCADE')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def process_env(settings: RuntimeSettings, **extra: str) -> dict[str, str]:
    """The environment of a service, worker or CLI process run with ``settings``: every
    setting as its FR_* variable (None as "none", lists and maps as JSON), so a child
    process gets the rig's names, schema, topic prefix and principal prefix too."""
    env: dict[str, str] = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            env[f"FR_{name.upper()}"] = "none"
        elif isinstance(value, list | dict):
            env[f"FR_{name.upper()}"] = json.dumps(value)
        else:
            env[f"FR_{name.upper()}"] = str(value)
    overrides: Mapping[str, str] = {"FR_LOG_JSON": "false"} | extra
    return env | dict(overrides)
