"""Fixtures for the trust-boundary tests, against the secured broker of deploy/stack.sh."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.runtime.kafka_admin import KafkaAdmin
from services.runtime.principals import LabCredentials, deprovision_lab, provision_lab
from tests.security.support import HINT, NewLab, Stack, unique


@pytest.fixture(autouse=True)
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every refused metadata refresh at WARNING, and refusals are
    what these tests provoke."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
async def stack() -> Stack:
    stack = Stack.from_env()
    try:
        async with KafkaAdmin(stack.operator) as admin:
            await admin.scram_users()
    except Exception as exc:
        pytest.fail(f"the secured broker at {stack.bootstrap} is unreachable ({exc!r}); {HINT}")
    return stack


@pytest.fixture
async def new_lab(stack: Stack, tmp_path: Path) -> AsyncIterator[NewLab]:
    """Register labs on the deployment (provision_lab); removed after the test."""
    created: list[str] = []

    async def create(lab_id: str | None = None) -> LabCredentials:
        lab_id = lab_id or unique("t")
        created.append(lab_id)
        return await provision_lab(stack.operator, lab_id, tmp_path / f"{lab_id}.json")

    yield create
    for lab_id in created:
        await deprovision_lab(stack.operator, lab_id, delete_feeds=True)
