"""Helpers for the evaluation tests: the demo model server, intake events, topic readers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import CloudEvent, Event, decode, encode, make_event
from contracts.events import (
    ReviewWindowClosed,
    SubmissionAccepted,
    SubmissionWithdrawn,
)
from contracts.registry import TOPIC_BY_NAME
from tests.contracts.examples import LAB_ID, example

EVALUATION_TYPES = TOPIC_BY_NAME["evaluation.events"].event_types
DEMO_API_KEY = "demo-lab-secret-7f3a9c"  # what the secret store holds; must never leak
CREDENTIAL_REF = f"labs/{LAB_ID}/eval-api-key"  # the submitting (example) lab's own secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
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


def accepted(
    base_url: str,
    profile: str,
    *,
    submission_id: UUID | None = None,
    modalities: list[str] | None = None,
    credential_ref: str = CREDENTIAL_REF,
    review_days: int = 14,
) -> SubmissionAccepted:
    now = datetime.now(UTC)
    base = example(SubmissionAccepted).model_dump(mode="json")
    base["model"]["modalities"] = modalities or ["text"]
    return SubmissionAccepted.model_validate(
        base
        | {
            "submission_id": str(submission_id or uuid.uuid4()),
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


def window_closed(submission: SubmissionAccepted) -> ReviewWindowClosed:
    return example(
        ReviewWindowClosed,
        submission_id=submission.submission_id,
        model_id=submission.model_id,
        deadline=submission.deadline,
        closed_at=datetime.now(UTC),
    )


def withdrawn(submission: SubmissionAccepted) -> SubmissionWithdrawn:
    return example(
        SubmissionWithdrawn,
        submission_id=submission.submission_id,
        model_id=submission.model_id,
        withdrawn_at=datetime.now(UTC),
    )


def record(data: Event, *, subject: str | None = None, source: str = "/tests") -> bytes:
    subject = subject or str(getattr(data, "submission_id"))  # noqa: B009
    return encode(make_event(data, source=source, subject=subject))


async def publish(bootstrap: str, topic: str, *records: tuple[str, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()


async def publish_events(bootstrap: str, topic: str, *events: Event) -> None:
    await publish(
        bootstrap,
        topic,
        *((str(getattr(e, "submission_id")), record(e)) for e in events),  # noqa: B009
    )


class EventReader:
    """Reads a topic from the start, keeps every decoded event, waits for conditions."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.events: list[CloudEvent[Event]] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> EventReader:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: Any) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            self.events += [decode(r.value or b"", EVALUATION_TYPES) for r in records]

    def of(self, subject: UUID | str, kind: type[Event] | None = None) -> list[Any]:
        """Payloads for one submission (subject), optionally of one type, in order."""
        return [
            e.data
            for e in self.events
            if e.subject == str(subject) and (kind is None or isinstance(e.data, kind))
        ]

    async def wait_until(
        self, condition: Callable[[], bool], *, timeout: float = 60, what: str = "events"
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                kinds = [type(e.data).__name__ for e in self.events]
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {kinds}")
            await self.poll()

    async def linger(self, seconds: float = 1.5) -> None:
        """Keep reading a little: a duplicate would arrive right after what we waited for."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await self.poll()


def grep_tree(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` containing ``needle``; Inspect logs are read decompressed."""
    from inspect_ai.log import read_eval_log

    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".eval":
            text = read_eval_log(str(path)).model_dump_json()
            assert "sample" in text  # really decoded
            if needle in text:
                hits.append(path)
        elif needle.encode() in path.read_bytes():
            hits.append(path)
    return hits
