"""The decision API as a lab runs it (`labclient.cli decision-api`, its own process),
following the service's policy feed; and `acknowledge` signing what an enforcer applied,
accepted by the running service (real Kafka + PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts.events.access import ComplianceRejected
from services.labclient.keys import save_private_key
from services.runtime import RuntimeSettings
from tests.access.rig import Rig, model_id, running_rig
from tests.access.support import order, person, ties
from tests.kit import free_port, wait_for

TOKEN = "gateway-caller-token-0123456789"
CN = person(citizenships=ties("CN"))


@pytest.fixture(scope="module")
async def rig(settings: RuntimeSettings, kafka: str, database: str) -> AsyncIterator[Rig]:
    async with running_rig(settings) as started:
        yield started


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, rig: Rig) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lab")
    tokens = folder / "callers.txt"
    tokens.write_text(f"{TOKEN}\n")
    key = folder / "lab.key"
    save_private_key(rig.labs["example-lab"].key, key)
    return {"tokens": tokens, "key": key}


def lab_cli(rig: Rig, key: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "services.labclient.cli",
        "--lab-id", "example-lab", "--key", str(key), "--key-id", "k1",
        "--bootstrap", rig.settings.kafka_bootstrap,
        *args,
    ]  # fmt: skip


def lab_env(rig: Rig) -> dict[str, str]:
    """The lab's process environment: the rig's topic prefix (the connection is the
    test principal's, from the environment)."""
    return os.environ | {"FR_TOPIC_PREFIX": rig.settings.topic_prefix}


@pytest.fixture(scope="module")
def sidecar(rig: Rig, files: dict[str, Path]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        lab_cli(
            rig, files["key"], "decision-api", "--tokens", str(files["tokens"]), "--port", str(port)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=lab_env(rig),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


async def test_the_decision_api_is_healthy_at_once_and_ready_once_caught_up(sidecar: str) -> None:
    async with httpx.AsyncClient(base_url=sidecar, timeout=5) as client:

        async def serving() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(serving, what="the decision API serving")
        await wait_for(lambda: _status(client, "/readyz", 200), what="the decision API ready")


async def _status(client: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await client.get(path)).status_code == code


async def test_the_decision_api_denies_under_a_new_order_and_answers_batches(
    rig: Rig, sidecar: str
) -> None:
    model = model_id()
    await rig.send(order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC)))
    await rig.version(model, 1)
    question = {"principal": CN.model_dump(mode="json"), "model_id": model}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=sidecar, timeout=5) as client:
        await wait_for(lambda: _status(client, "/readyz", 200), what="ready")

        async def denied() -> bool:
            answer = await client.post("/v1/decision", json=question, headers=auth)
            return answer.status_code == 200 and answer.json()["allowed"] is False

        await wait_for(denied, what="a deny under version 1")
        batch = {"items": [question, {**question, "principal": person().model_dump(mode="json")}]}
        answers = (await client.post("/v1/decisions", json=batch, headers=auth)).json()
        assert [d["allowed"] for d in answers["decisions"]] == [False, True]
        assert {d["policy_version"] for d in answers["decisions"]} == {1}
        assert (await client.post("/v1/decision", json=question)).status_code == 401


@pytest.mark.parametrize("source", ["feed", "decision-api"])
async def test_acknowledge_signs_the_applied_version_and_the_service_accepts_it(
    rig: Rig, files: dict[str, Path], sidecar: str, source: str
) -> None:
    model = model_id()
    await rig.send(order(model_id=model, nationalities=["CN"], effective_at=datetime.now(UTC)))
    published = await rig.version(model, 1)
    extra: list[str] = []
    if source == "decision-api":
        token = files["tokens"]
        extra = ["--decision-api", sidecar, "--api-token-file", str(token)]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=sidecar, timeout=5) as client:

            async def has_it() -> bool:
                status = (await client.get("/v1/status", headers=auth)).json()
                return model in status["models"]

            await wait_for(has_it, what="the decision API applying the version")
    done = await asyncio.to_thread(
        subprocess.run,
        lab_cli(
            rig,
            files["key"],
            "acknowledge",
            "--model-id",
            model,
            "--enforcement-point",
            "gateway-eu",
            *extra,
        ),
        capture_output=True,
        timeout=120,
        check=False,
        env=lab_env(rig),
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    async def accepted() -> bool:
        rows = await rig.fetch(
            "SELECT content_hash, enforcement_points FROM acknowledgements WHERE model_id = $1",
            model,
        )
        return bool(rows) and rows[0]["content_hash"] == published.content_hash

    await wait_for(accepted, what="the acknowledgement accepted")
    assert rig.answers(ComplianceRejected, model_id=model) == []
