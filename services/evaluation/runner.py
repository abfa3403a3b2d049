"""Runs one Inspect evaluation in a child process, isolated, with a hard time limit.

The worker awaits ``InspectRunner.run``; if the attempt times out, or the
awaiting task is cancelled (lease lost, window closed, shutdown), the child's
whole process group is killed, so a stopped evaluation really stops calling the
lab's model. The child runs in a working directory of its own, without
capabilities, and walls itself off from the secrets, the evidence and the other
runs (isolation.py) before it loads the task. Its log
is moved into the evidence directory and hashed here, by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from services.evaluation import isolation
from services.evaluation.credentials import redact
from services.evaluation.jobs import (
    attempt_timed_out,
    child_crashed,
    not_started,
    unreadable_result,
)
from services.evaluation.model import Failure
from services.evaluation.runs import ChildRequest, RunRequest, RunResult, Sandbox

log = logging.getLogger(__name__)

STDERR_TAIL_CHARS = 2000
RESULT_MAX_BYTES = 1_000_000

# What an Inspect process may inherit: what Python, Inspect and HTTP(S) need, nothing else.
# Not the worker's environment as a whole: it holds the database URL with its password and
# whatever else the deployment put there; a task that lets the lab's model run code must
# find none of it.
CHILD_ENV_NAMES = frozenset(
    {
        "PATH", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ",
        "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
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


# Hidden from a child that runs as root (without capabilities): what only root may read.
ROOT_ONLY = ("/root", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh")


class Runner(Protocol):
    async def run(self, request: RunRequest, timeout_s: float) -> RunResult | Failure: ...


def child_environment(
    environ: Mapping[str, str],
    secret_env_prefix: str,
    passthrough: Iterable[str] = (),
    home: Path | None = None,
) -> dict[str, str]:
    """The environment of an Inspect process: allowed names only, never a secret.

    ``passthrough`` names more variables the operator wants passed (e.g. for the
    agency's own suites); a name under the secret-store prefix is never passed.
    ``home`` is the process's working directory: its HOME, temp and XDG dirs.
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
    kept |= {"INSPECT_DISPLAY": "none", "PYTHONUNBUFFERED": "1"}
    if home is not None:
        kept |= {
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
        }
    return kept


def endpoint_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


class InspectRunner:
    """A child process per run: ``python -m services.evaluation.inspect_process``."""

    def __init__(
        self,
        *,
        run_dir: Path,
        hidden: Iterable[Path],
        python: str = sys.executable,
        secret_env_prefix: str = "FR_SECRET_",
        env_passthrough: Iterable[str] = (),
        connect_ports: Iterable[int] = (),
        hosts: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """``hosts``: names the Inspect processes resolve without DNS (tests only; the
        endpoint guard checks those addresses like any other)."""
        self.run_root = run_dir.absolute()
        self.hidden = [Path(p).absolute() for p in hidden]
        self.readable: list[Path] = []
        if os.geteuid() == 0:
            # The child is root without capabilities: what root owns alone is hidden,
            # except the interpreter (which may live in root's home).
            self.hidden += [Path(p) for p in ROOT_ONLY]
            self.readable = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
        self.python = python
        self.secret_env_prefix = secret_env_prefix
        self.env_passthrough = tuple(env_passthrough)
        self.connect_ports = tuple(connect_ports)
        self.hosts = {name: list(addresses) for name, addresses in (hosts or {}).items()}

    async def run(self, request: RunRequest, timeout_s: float) -> RunResult | Failure:
        try:
            workdir = isolation.run_dir(self.run_root, uuid.uuid4().hex)
        except OSError as exc:
            return not_started(exc)
        try:
            return await self._run(request, timeout_s, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _run(
        self, request: RunRequest, timeout_s: float, workdir: Path
    ) -> RunResult | Failure:
        sandbox = Sandbox(
            hidden=[*self.hidden, self.run_root],
            readable=self.readable,
            writable=[workdir],
            connect_ports=[endpoint_port(request.base_url), *self.connect_ports],
        )
        child = ChildRequest.of(request, workdir / "logs", sandbox, self.hosts)
        try:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "services.evaluation.inspect_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: killed as a whole
                env=child_environment(
                    os.environ, self.secret_env_prefix, self.env_passthrough, home=workdir
                ),
            )
        except OSError as exc:
            return not_started(exc)
        try:
            async with asyncio.timeout(timeout_s):
                stdout, stderr = await process.communicate(child.to_stdin())
        except TimeoutError:
            kill(process)
            await process.wait()
            return attempt_timed_out(timeout_s)
        except BaseException:
            kill(process)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        tail = redact(stderr.decode(errors="replace")[-STDERR_TAIL_CHARS:].strip(), request.api_key)
        if process.returncode != 0 or not stdout:
            return child_crashed(process.returncode, tail)
        try:
            if len(stdout) > RESULT_MAX_BYTES:
                raise ValueError(f"{len(stdout)} bytes")
            result = RunResult.model_validate_json(stdout)
        except (ValidationError, ValueError) as exc:
            return unreadable_result(redact(f"{exc}\nstderr: {tail}", request.api_key))
        for field in ("error", "endpoint_refusal"):
            text = getattr(result, field)
            if text:
                result = result.model_copy(update={field: redact(text, request.api_key)})
        return self._keep_evidence(result, child, request.log_file)

    def _keep_evidence(
        self, result: RunResult, child: ChildRequest, log_file: Path
    ) -> RunResult | Failure:
        """Move the child's log (only from its own staging directory) to ``log_file``."""
        staged = result.log_file
        if staged is None:
            return result
        staged = staged.resolve()
        if staged.parent != child.log_dir.resolve() or not staged.is_file() or staged.is_symlink():
            return unreadable_result(f"the log file {staged} is not in {child.log_dir}")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, log_file)
        digest = hashlib.sha256(log_file.read_bytes()).hexdigest()
        return result.model_copy(update={"log_file": log_file, "log_sha256": digest})


def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
