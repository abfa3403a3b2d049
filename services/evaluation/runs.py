"""What a worker asks of one Inspect run, and what the run reports back.

The request travels to the Inspect child process on its stdin (never argv or
the environment, which other processes can read); the API key in it is a
SecretStr, so printing or logging a request never shows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr


class RunRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str  # "module:function" of an Inspect @task
    base_url: str  # the lab's OpenAI-compatible endpoint
    api_model: str
    api_key: SecretStr
    log_file: Path  # where the Inspect log ends up
    max_retries: int
    request_timeout_s: int

    def to_child(self) -> bytes:
        """The one place the secret is revealed: for the child's stdin."""
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
    error: str | None = None
    log_file: Path | None = None
    log_sha256: str | None = None
    inspect_seconds: float = 0.0  # wall time of eval_async itself
    samples_total: int = 0
    samples_completed: int = 0
    metrics: list[MetricResult] = []
