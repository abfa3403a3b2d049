"""Runs one Inspect evaluation in a child process, with a hard time limit.

The worker awaits ``InspectRunner.run``; if the attempt times out, or the
awaiting task is cancelled (lease lost, window closed, shutdown), the child's
whole process group is killed, so a stopped evaluation really stops calling the
lab's model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Protocol

from pydantic import ValidationError

from services.evaluation.credentials import redact
from services.evaluation.runs import RunRequest, RunResult

STDERR_TAIL_CHARS = 2000


class AttemptTimeout(Exception):
    pass


class Runner(Protocol):
    async def run(self, request: RunRequest, timeout_s: float) -> RunResult: ...


class InspectRunner:
    """A child process per run: ``python -m services.evaluation.inspect_process``."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "services.evaluation.inspect_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed as a whole
            env=os.environ | {"INSPECT_DISPLAY": "none", "PYTHONUNBUFFERED": "1"},
        )
        try:
            async with asyncio.timeout(timeout_s):
                stdout, stderr = await process.communicate(request.to_child())
        except TimeoutError:
            kill(process)
            await process.wait()
            raise AttemptTimeout(f"the attempt exceeded its {timeout_s:.0f} s limit") from None
        except BaseException:
            kill(process)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        if process.returncode != 0 or not stdout:
            tail = stderr.decode(errors="replace")[-STDERR_TAIL_CHARS:].strip()
            error = f"inspect process exited with {process.returncode}: {tail or 'no output'}"
            return RunResult(status="error", error=redact(error, request.api_key))
        try:
            result = RunResult.model_validate_json(stdout)
        except ValidationError as exc:
            return RunResult(status="error", error=f"unreadable result from inspect: {exc}")
        if result.error:
            result = result.model_copy(update={"error": redact(result.error, request.api_key)})
        return result


def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
