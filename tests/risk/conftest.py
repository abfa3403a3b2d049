"""The risk rig as a fixture (its parts live in tests/risk/rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.runtime import RuntimeSettings
from tests.risk.rig import Rig, running_rig


@pytest.fixture(scope="module")
async def rig(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    async with running_rig(settings, tmp_path_factory.mktemp("risk")) as started:
        yield started
