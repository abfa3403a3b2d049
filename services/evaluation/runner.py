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
import re
import signal
import sys
from collections.abc import Iterable, Mapping
from typing import Protocol

from pydantic import ValidationError

from services.evaluation.credentials import redact
from services.evaluation.runs import RunRequest, RunResult

STDERR_TAIL_CHARS = 2000

# What an Inspect process may inherit: what Python, Inspect and HTTP(S) need, nothing else.
# Not the worker's environment as a whole: it holds every lab's secret ($FR_SECRET_*), the
# database URL with its password, and whatever else the deployment put there; a task that
# lets the lab's model run code must find none of it.
CHILD_ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    }
)  # fmt: skip
CHILD_ENV_PREFIXES = ("LC_", "INSPECT_")
# Even among those, a name with one of these words is left out (INSPECT_..._API_KEY).
SECRET_WORDS = frozenset(
    {
        "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "TOKEN", "KEY", "APIKEY",
        "CREDENTIAL", "CREDENTIALS", "AUTH", "COOKIE", "SESSION", "DSN", "PRIVATE",
    }
)  # fmt: skip


class AttemptTimeout(Exception):
    pass


class Runner(Protocol):
    async def run(self, request: RunRequest, timeout_s: float) -> RunResult: ...


def child_environment(
    environ: Mapping[str, str], secret_env_prefix: str, passthrough: Iterable[str] = ()
) -> dict[str, str]:
    """The environment of an Inspect process: allowed names only, never a secret.

    ``passthrough`` names more variables the operator wants passed (e.g. for the
    agency's own suites); a name under the secret-store prefix is never passed.
    """
    extra = set(passthrough)

    def allowed(name: str) -> bool:
        if name.upper().startswith(secret_env_prefix.upper()):
            return False
        if name in extra:
            return True
        upper = name.upper()
        known = upper in CHILD_ENV_NAMES or upper.startswith(CHILD_ENV_PREFIXES)
        return known and not SECRET_WORDS.intersection(re.split(r"[^A-Z0-9]+", upper))

    kept = {name: value for name, value in environ.items() if allowed(name)}
    return kept | {"INSPECT_DISPLAY": "none", "PYTHONUNBUFFERED": "1"}


class InspectRunner:
    """A child process per run: ``python -m services.evaluation.inspect_process``."""

    def __init__(
        self,
        python: str = sys.executable,
        *,
        secret_env_prefix: str = "FR_SECRET_",
        env_passthrough: Iterable[str] = (),
    ) -> None:
        self.python = python
        self.secret_env_prefix = secret_env_prefix
        self.env_passthrough = tuple(env_passthrough)

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult:
        process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "services.evaluation.inspect_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed as a whole
            env=child_environment(os.environ, self.secret_env_prefix, self.env_passthrough),
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
