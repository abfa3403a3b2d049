"""Fixtures of the system tests (their parts live in tests/system/rig.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.evaluation.rig import demo_model_server
from tests.system.rig import DEMO_API_KEY


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    """The demo lab model server (a process of its own), the labs' evaluation endpoint."""
    with demo_model_server(DEMO_API_KEY) as url:
        yield url
