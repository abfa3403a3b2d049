"""A PostgreSQL server of one test's own, which the test may restart and crash.

The shared server of deploy/stack.sh must never be restarted by a test (every
other test uses it), so a test of what a restart does to the services starts
its own: ``initdb`` into a temporary directory with the binaries deploy/stack.sh
uses, on a free port, durable as production is (fsync and synchronous_commit
on), the same role and database names. ``restart()`` is what an operator's
restart does (``pg_ctl restart -m fast``: every session is told
``terminating connection due to administrator command``, a checkpoint is
written); ``crash()`` is a power cut: the postmaster and every backend are
SIGKILLed at once, nothing is flushed that was not already, and the next start
runs crash recovery from the WAL.

As root, every server command runs as the ``postgres`` OS user (PostgreSQL
refuses to run as root), as deploy/stack.sh does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from tests.kit.services import free_port

HOST = "127.0.0.1"
USER = "frontier"
DATABASE = "frontier_review"
START_TIMEOUT_S = 60


def server_binaries() -> Path:
    """The newest installed server's bin directory, as deploy/stack.sh picks it."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found or not (found[-1] / "initdb").exists():
        raise RuntimeError("PostgreSQL server binaries not found; run: bash deploy/install.sh")
    return found[-1]


class PrivateServer:
    """One PostgreSQL server in a temporary directory; ``url`` is where it listens."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="fr-pg-"))
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.url = f"postgresql://{USER}:{USER}@{HOST}:{self.port}/{DATABASE}"
        self.restarts = 0
        self.crashes = 0

    # lifecycle ----------------------------------------------------------------
    async def create(self) -> None:
        """initdb, configure, start, and create the role and database."""
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        await self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip
        conf = (
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.home}'\n"
            "max_connections = 100\n"
            # Durable as production: a commit acknowledged is on disk, so a crash
            # loses nothing a client was told is committed.
            "fsync = on\n"
            "synchronous_commit = on\n"
            "full_page_writes = on\n"
        )
        await self._run("sh", "-c", f"cat >> '{self.data}/postgresql.conf' <<'EOF'\n{conf}EOF")
        await self.start()
        admin = await asyncpg.connect(
            f"postgresql://postgres@{HOST}:{self.port}/postgres", timeout=10
        )
        try:
            await admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{USER}' CREATEDB")
            await admin.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        finally:
            await admin.close()

    async def start(self) -> None:
        await self._pg_ctl("start", "-l", str(self.log))

    async def restart(self) -> None:
        """An operator's restart: sessions terminated, checkpoint, up again."""
        await self._pg_ctl("restart", "-m", "fast", "-l", str(self.log))
        self.restarts += 1

    async def crash(self) -> None:
        """A power cut: SIGKILL to the postmaster and all its processes at once, then
        start again (crash recovery replays the WAL)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        for pid in [postmaster, *_children(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await _wait_gone(postmaster)
        # A dead postmaster's lock files: the server would remove them itself, but a
        # zombie (an init that does not reap) still answers kill(pid, 0).
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.home / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)
        self.crashes += 1
        await self.start()

    async def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.home, ignore_errors=True)

    # helpers -------------------------------------------------------------------
    async def _pg_ctl(self, *args: str) -> None:
        await self._run("pg_ctl", *args, "-D", str(self.data), "-w", "-t", str(START_TIMEOUT_S))

    async def _run(self, program: str, *args: str) -> None:
        executable = program if program == "sh" else str(self.bin / program)
        command = [executable, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd="/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed: {output.decode()}\n{tail}")


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (a postmaster's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has released its memory)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _wait_gone(pid: int) -> None:
    for _ in range(200):
        if not _running(pid):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"process {pid} did not die after SIGKILL")


@contextlib.asynccontextmanager
async def private_server() -> AsyncIterator[PrivateServer]:
    """A started ``PrivateServer``, destroyed (stopped, directory removed) afterwards."""
    server = PrivateServer()
    try:
        await server.create()
        yield server
    finally:
        await server.destroy()
