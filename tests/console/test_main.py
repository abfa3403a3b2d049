"""``python -m services.console`` starts the console like every service: settings from
FR_* variables, its ACLs checked, its schema migrated, the pipeline read, the pages
served; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from contracts import encode, make_event
from contracts.registry import subject_for
from services.console.settings import ConsoleSettings
from services.runtime import RuntimeSettings
from tests.console.rig import console_settings, token_of
from tests.console.scenario import Scenario
from tests.kit import Producer, create_registry_topics, drop_schema, free_port, wait_for


def environment(settings: ConsoleSettings) -> dict[str, str]:
    """The settings a deployment would give the process, as FR_* variables."""
    assert settings.http_port is not None
    return dict(os.environ) | {
        "FR_DB_SCHEMA": settings.db_schema,
        "FR_TOPIC_PREFIX": settings.topic_prefix,
        "FR_DATABASE_URL": settings.database_url,
        "FR_HTTP_PORT": str(settings.http_port),
        "FR_CONSOLE_TOKENS_FILE": str(settings.console_tokens_file),
        "FR_CONSOLE_TRACES_FILE": str(settings.console_traces_file),
        "FR_LOG_JSON": "false",
    }


@pytest.fixture
async def started(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path: Path
) -> AsyncIterator[tuple[ConsoleSettings, subprocess.Popen[bytes], Path]]:
    config = console_settings(settings, tmp_path, http_port=free_port())
    await create_registry_topics(config)  # the deployment's topics exist before its services
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.console"],
            env=environment(config),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield config, process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        await drop_schema(config)


async def test_python_m_services_console_serves_the_pipeline_and_stops_on_sigterm(
    started: tuple[ConsoleSettings, subprocess.Popen[bytes], Path],
) -> None:
    config, process, log = started
    s = Scenario()
    data = s.accepted()
    accepted = make_event(data, source="/frontier-review/intake", subject=subject_for(data))
    async with Producer(config) as producer:
        await producer.send(config.topic("intake.events"), encode(accepted), accepted.subject)
    url = f"http://127.0.0.1:{config.http_port}"
    headers = {"Authorization": f"Bearer {token_of(config)}"}

    async def shown() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                page = await client.get(f"/submissions/{s.submission_id}", headers=headers)
        except httpx.TransportError:
            return False  # not listening yet
        return page.status_code == 200 and s.model_id in page.text

    await wait_for(shown, timeout=60, what="the submission on the console's page")
    process.send_signal(signal.SIGTERM)
    assert await exit_code(process) == 0, log.read_text()[-3000:]


async def exit_code(process: subprocess.Popen[bytes]) -> int | None:
    async def exited() -> bool:
        return process.poll() is not None

    await wait_for(exited, timeout=30, what="the console to stop after SIGTERM")
    return process.returncode
