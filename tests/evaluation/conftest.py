"""Fixtures of the evaluation tests (their parts live in tests/evaluation/rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.runtime import RuntimeSettings
from tests.evaluation.rig import EvalRig, demo_model_server, running_rig


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    with demo_model_server() as url:
        yield url


@pytest.fixture
async def rig(
    settings: RuntimeSettings, kafka: str, database: str, demo_url: str, tmp_path: Path
) -> AsyncIterator[EvalRig]:
    async with running_rig(settings, demo_url, tmp_path) as started:
        yield started
