"""Revoking a principal must not lock everyone out at the next broker restart.

Kafka 4.1's ScramDelta.apply() loses every SCRAM credential when it replays a
removal into an image without credentials (see the snapshot note in
deploy/kafka/server.properties.template). The broker configuration takes
metadata snapshots early, so a restart replays from an image that holds the
super users. This test runs its own broker (ports and data of its own), made
exactly as deploy/stack.sh makes the local one, and restarts it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from deploy import local_kafka
from services.runtime.kafka import KafkaCredentials
from services.runtime.kafka_admin import KafkaAdmin
from tests.security.support import Stack, connect_error

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / ".local" / "kafka" / "libs"
TEMPLATE = ROOT / "deploy" / "kafka" / "server.properties.template"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.xml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def stack(self) -> Stack:
        principals = self.home / "principals"
        return Stack(f"127.0.0.1:{self.port}", self.home / "tls" / "ca.pem", principals,
                     principals / "operator.json")  # fmt: skip

    def start(self) -> None:
        log = (self.home / "server.out").open("ab")
        self.process = subprocess.Popen(
            [
                "java", "-Xms128m", "-Xmx256m",
                f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={self.home / 'logs'}",
                "-cp", f"{LIBS}/*", "kafka.Kafka", str(self.home / "server.properties"),
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    async def ready(self, *, snapshot: bool) -> None:
        assert self.process is not None
        argv = ["wait-ready", "--home", str(self.home), "--bootstrap", f"127.0.0.1:{self.port}"]
        argv += ["--pid", str(self.process.pid), "--timeout", "120"]
        if snapshot:
            argv += ["--snapshot-in", str(self.data)]
        code = await asyncio.to_thread(local_kafka.main, ["local_kafka", *argv])
        assert code == 0, f"the test broker did not get ready (see {self.home / 'server.out'})"

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            await asyncio.to_thread(self.process.wait, 60)
        self.process = None


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    made = Broker(tmp_path, free_port())
    (tmp_path / "logs").mkdir()
    render = ["render", "--home", str(tmp_path), "--template", str(TEMPLATE)]
    render += ["--out", str(tmp_path / "server.properties"), "--client-port", str(made.port)]
    render += ["--controller-port", str(free_port()), "--log-dirs", str(made.data)]
    assert local_kafka.main(["local_kafka", *render]) == 0
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    format_args = ["format-args", "--home", str(tmp_path), "--cluster-id", cluster_id]
    format_args += ["--config", str(tmp_path / "server.properties")]
    assert local_kafka.main(["local_kafka", *format_args]) == 0
    args = tmp_path / "format.args"
    subprocess.run(
        ["java", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{LIBS}/*", f"@{args}"],
        check=True,
        capture_output=True,
    )
    args.unlink()
    made.start()
    try:
        await made.ready(snapshot=True)
        yield made
    finally:
        await made.stop()


async def test_credentials_survive_a_restart_after_a_principal_was_revoked(
    broker: Broker,
) -> None:
    alice = KafkaCredentials("alice", SecretStr("alice-secret-0123456789"))
    async with KafkaAdmin(broker.stack.operator) as admin:
        for name in ("alice", "bob", "lab.gone"):
            await admin.upsert_scram_user(name, f"{name}-secret-0123456789")
        for name in ("bob", "lab.gone"):
            assert await admin.delete_scram_user(name)
    await broker.stop()
    broker.start()
    await broker.ready(snapshot=False)
    assert await connect_error(broker.stack.operator) is None
    assert await connect_error(broker.stack.settings(alice)) is None
    gone = KafkaCredentials("bob", SecretStr("bob-secret-0123456789"))
    assert await connect_error(broker.stack.settings(gone)) == "SaslAuthenticationFailed"
