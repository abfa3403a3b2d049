"""Restarting the stack under test: its Kafka broker, its PostgreSQL server.

A test that restarts infrastructure must restart the stack its settings point at and
no other (a developer's shared stack, another worktree's): ``FR_SYSTEM_STACK`` names
that stack's ``deploy/stack.sh`` (deploy/test.sh sets it to its own, with the ports
in FR_KAFKA_PORT / FR_KAFKA_CONTROLLER_PORT / FR_PG_PORT, which this process and the
script both read), and the rig refuses unless ``stack.sh status`` reports the broker
and database on the ports of the test's settings.

How (from deploy/stack.sh): ``status`` prints each server's port and the broker's pid;
the PostgreSQL server's pid is the first line of ``.local/pg/data/postmaster.pid``
under the script's repository; ``up`` starts whichever of the two is down and waits
until it is ready (and re-checks topics and principals, which changes nothing).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from services.runtime import RuntimeSettings

VARIABLE = "FR_SYSTEM_STACK"
KAFKA_STOP_S = 60.0
# A broker of a test stack holds many partitions (every test makes topics of its own):
# loading them after a restart takes longer than stack.sh's default wait on a busy
# machine.
KAFKA_START_S = 300
UP_TIMEOUT_S = 420.0


class StackNotUnderTest(RuntimeError):
    """There is no stack this test may restart (or it is not the one it uses)."""


@dataclass(frozen=True)
class Stack:
    script: Path

    @property
    def root(self) -> Path:
        return self.script.resolve().parents[1]

    async def _run(self, command: str, timeout: float = UP_TIMEOUT_S) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(self.script),
            command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ) | {"FR_KAFKA_START_TIMEOUT": str(KAFKA_START_S)},
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace")

    async def status(self) -> dict[str, tuple[int, int | None]]:
        """``{"kafka": (port, pid), "postgres": (port, None)}`` of what is running."""
        _, out = await self._run("status", 60)
        found: dict[str, tuple[int, int | None]] = {}
        for name, port, pid in re.findall(
            r"^(kafka|postgres): running on :(\d+)(?: \(pid (\d+)\))?", out, re.MULTILINE
        ):
            found[name] = (int(port), int(pid) if pid else None)
        return found

    async def check(self, settings: RuntimeSettings) -> None:
        running = await self.status()
        wanted = {
            "kafka": int(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]),
            "postgres": urlsplit(settings.database_url).port or 5432,
        }
        for name, port in wanted.items():
            if name not in running or running[name][0] != port:
                raise StackNotUnderTest(
                    f"{self.script} runs {name} on {running.get(name, ('nothing',))[0]}, "
                    f"but this test's settings use port {port}: it restarts only its own stack"
                )

    async def up(self) -> None:
        code, out = await self._run("up")
        if code != 0:
            raise RuntimeError(f"{self.script} up failed ({code}):\n{out[-3000:]}")

    async def restart_kafka(self) -> None:
        """SIGTERM to the broker (a controlled shutdown, as ``stack.sh down`` does it),
        then ``up``."""
        _, pid = (await self.status())["kafka"]
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        await _gone(pid, KAFKA_STOP_S)
        await self.up()

    async def crash_postgres(self) -> None:
        """SIGQUIT to the postmaster: an immediate shutdown, every session cut without a
        checkpoint (the server recovers from its WAL at the next start), then ``up``."""
        pid_file = self.root / ".local" / "pg" / "data" / "postmaster.pid"
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)
        await _gone(pid, 60.0)
        await self.up()


async def _gone(pid: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _state(pid) not in ("gone", "Z"):
        if loop.time() > deadline:
            raise TimeoutError(f"process {pid} still runs {timeout} s after the signal")
        await asyncio.sleep(0.2)


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return text.rsplit(")", 1)[1].split()[0]


async def stack_under_test(settings: RuntimeSettings) -> Stack:
    """The stack this test may restart, checked against its settings."""
    script = os.environ.get(VARIABLE)
    if not script:
        raise StackNotUnderTest(
            f"{VARIABLE} is not set: it names the deploy/stack.sh of the stack under test, "
            "whose broker and database this test restarts (deploy/test.sh sets it)"
        )
    stack = Stack(Path(script))
    await stack.check(settings)
    return stack
