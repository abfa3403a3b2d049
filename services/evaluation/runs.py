"""What a worker asks of one Inspect run, what the Inspect process is told, and what it
reports back.

The request travels to the Inspect process on its stdin (never argv or the
environment, which other processes can read); the API key in it is a
SecretStr, so printing or logging a request never shows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr


class RunRequest(BaseModel):
    """A worker's request to its runner."""

    model_config = ConfigDict(frozen=True)

    task: str  # "module:function" of an Inspect @task
    base_url: str  # the lab's OpenAI-compatible endpoint
    api_model: str
    api_key: SecretStr
    log_file: Path  # where the attempt's Inspect log is kept as evidence
    max_retries: int
    request_timeout_s: int
    # host:port pairs exempt from the endpoint policy (the evaluation setting)
    endpoint_allowlist: list[str] = []


class Sandbox(BaseModel):
    """What the Inspect process walls itself off from before it loads the task."""

    model_config = ConfigDict(frozen=True)

    hidden: list[Path]  # secrets, evidence, other runs' working directories
    readable: list[Path]  # beneath hidden ones, still readable (the interpreter)
    writable: list[Path]  # its own working directory: the only place it writes
    connect_ports: list[int]  # TCP ports it may connect to (the endpoint's)


class ChildRequest(BaseModel):
    """What the Inspect process reads on its stdin."""

    model_config = ConfigDict(frozen=True)

    task: str
    base_url: str
    api_model: str
    api_key: SecretStr
    log_dir: Path  # the process's own staging directory for its log
    max_retries: int
    request_timeout_s: int
    sandbox: Sandbox
    endpoint_allowlist: list[str] = []
    # Names the process resolves to these addresses instead of asking DNS, like a hosts
    # file (tests: a name that rebinds to a private address); the guard checks them as
    # it checks any answer. Empty in production.
    hosts: dict[str, list[str]] = {}

    @classmethod
    def of(
        cls,
        request: RunRequest,
        log_dir: Path,
        sandbox: Sandbox,
        hosts: dict[str, list[str]] | None = None,
    ) -> ChildRequest:
        """What the process is told of ``request`` (all of it but where the worker keeps
        the log), with its own staging ``log_dir``, its ``sandbox`` and ``hosts``."""
        return cls(
            **request.model_dump(exclude={"log_file"}),  # the api_key stays a SecretStr
            log_dir=log_dir,
            sandbox=sandbox,
            hosts=hosts or {},
        )

    def to_stdin(self) -> bytes:
        """The one place the secret is revealed: for the Inspect process's stdin."""
        document = self.model_dump(mode="json")
        document["api_key"] = self.api_key.get_secret_value()
        return json.dumps(document).encode()


class MetricResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    scorer: str
    metric: str
    value: float
    stderr: float | None = None
    samples_scored: int | None = None


class RunResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["success", "error", "cancelled", "started"]
    error: str | None = None  # Inspect's error text: may quote the sample (never published)
    log_file: Path | None = None
    log_sha256: str | None = None
    inspect_seconds: float = 0.0  # wall time of eval_async itself
    samples_total: int = 0
    samples_completed: int = 0
    metrics: list[MetricResult] = []
    # The first refusal of the endpoint guard, if it refused a request or a connection
    # (its detail: for the service log only); the run then failed for that reason.
    endpoint_refusal: str | None = None
