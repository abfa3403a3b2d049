"""The intake rig as a fixture (its parts live in tests/intake/rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.runtime import RuntimeSettings
from tests.intake.rig import Rig, running_rig


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings) as started:
        yield started
