"""A consumer process stopped at any moment loses nothing and applies nothing twice,
and its committed offsets never run ahead of what it applied."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from functools import partial

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.runtime import RuntimeSettings
from tests.kit import NewTopic, produce, wait_for
from tests.runtime.support import ping_record
from tests.runtime.test_consumer import applied, count_applied

COMMAND = [sys.executable, "-m", "tests.runtime.support"]


def environment(settings: RuntimeSettings, schema: str, topic: str, **extra: str) -> dict[str, str]:
    return (
        os.environ
        | {
            "FR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FR_DATABASE_URL": settings.database_url,
            "FR_SERVICE_NAME": f"test-{uuid.uuid4().hex[:8]}",
            "FR_DB_SCHEMA": schema,
            "FR_TOPIC_PREFIX": settings.topic_prefix,
            "TEST_TOPIC": topic,
            "FR_LOG_JSON": "false",
        }
        | extra
    )


@pytest.mark.parametrize(
    ("stop_signal", "graceful_timeout_s"),
    [
        (signal.SIGKILL, 5.0),
        (signal.SIGTERM, 5.0),  # in-flight batch finishes within the grace period
        (signal.SIGTERM, 0.05),  # grace period ends mid-batch: the handler is cancelled
    ],
    ids=["sigkill", "sigterm", "sigterm-cut-off"],
)
async def test_consumer_process_stopped_mid_stream_loses_and_doubles_nothing(
    settings: RuntimeSettings,
    schema: str,
    new_topic: NewTopic,
    stop_signal: signal.Signals,
    graceful_timeout_s: float,
) -> None:
    topic = await new_topic("crash")
    total = 300
    await produce(
        settings, topic, [(f"k{i % 7}", ping_record(f"k{i % 7}", i)) for i in range(total)]
    )
    env = environment(
        settings,
        schema,
        topic,
        TEST_DELAY="0.01",  # slow enough to be stopped mid-stream
        FR_GRACEFUL_TIMEOUT_S=str(graceful_timeout_s),
        FR_CONSUMER_BATCH_SIZE="20",  # small batches: a stop lands mid-stream
    )
    process = subprocess.Popen(COMMAND, env=env)
    try:
        await wait_for(
            partial(count_applied, settings.database_url, schema, 40), timeout=60, what="progress"
        )
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=30)
    assert code == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0)
    assert len(await applied(settings.database_url, schema)) < total, "stopped too late"

    process = subprocess.Popen(COMMAND, env=env | {"TEST_DELAY": "0"})
    try:
        await wait_for(
            partial(count_applied, settings.database_url, schema, total), timeout=90, what="all"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == list(range(total))
    assert all(r["times"] == 1 for r in rows), "an event was applied twice"


async def test_committed_offsets_never_name_an_unapplied_record(
    settings: RuntimeSettings, schema: str, new_topic: NewTopic
) -> None:
    """Offsets are committed in the background while records are fetched ahead; at no
    moment may the group's offset pass a record whose transaction did not commit.
    Then SIGKILL between fetch and apply, and a restart: nothing is lost."""
    topic = await new_topic("ahead", partitions=1)
    total = 400
    await produce(settings, topic, [("k", ping_record("k", i)) for i in range(total)])
    env = environment(settings, schema, topic, TEST_DELAY="0.005", FR_CONSUMER_BATCH_SIZE="25")
    group = settings.topic(env["FR_SERVICE_NAME"] + "." + topic)
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    conn = await asyncpg.connect(settings.database_url)
    process = subprocess.Popen(COMMAND, env=env)
    observations = 0
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            committed = offsets.get(TopicPartition(topic, 0))
            if committed is not None and committed.offset > 0:
                exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".applied')
                done = set()
                if exists:
                    done = {
                        r["seq"] for r in await conn.fetch(f'SELECT seq FROM "{schema}".applied')
                    }
                missing = set(range(committed.offset)) - done
                assert not missing, (
                    f"offset {committed.offset} committed, {sorted(missing)[:5]} not applied"
                )
                observations += 1
                if committed.offset > total // 2:
                    break
            await asyncio.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        await admin.close()
        await conn.close()
    assert observations >= 3, "the commits were never observed under way"
    process = subprocess.Popen(COMMAND, env=env | {"TEST_DELAY": "0"})
    try:
        await wait_for(
            partial(count_applied, settings.database_url, schema, total), timeout=90, what="all"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rows = await applied(settings.database_url, schema)
    assert sorted(r["seq"] for r in rows) == list(range(total))
    assert all(r["times"] == 1 for r in rows)
