"""Fixtures of the console's tests: one console service on the real stack for the
module's tests (each test feeds it a submission of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.runtime import RuntimeSettings
from tests.console.rig import Rig, running_rig


@pytest.fixture(scope="module")
async def console(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    async with running_rig(settings, tmp_path_factory.mktemp("console")) as rig:
        yield rig
