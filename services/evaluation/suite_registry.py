"""The versioned suite registry: which Inspect suites exist and how to run them.

A suite is identified by (id, version). The registry file has a version of its
own, recorded in EvaluationStarted, so an evaluation can always be traced back
to the exact registry that planned it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.events.common import Modality, PolicyVersion, RiskDomain, Slug

TaskRef = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", max_length=300)
]
"""``package.module:task_function`` of an Inspect ``@task``."""


class SuiteSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Slug
    version: PolicyVersion
    domain: RiskDomain
    capability: Slug
    task: TaskRef
    timeout_seconds: int = Field(ge=1, le=86_400)
    max_attempts: int = Field(ge=1, le=20)
    modalities: list[Modality] = Field(default_factory=lambda: [Modality.TEXT], min_length=1)
    enabled: bool = True
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.version)


class SuiteRegistry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_version: PolicyVersion
    suites: list[SuiteSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        keys = [s.key for s in self.suites]
        if len(set(keys)) != len(keys):
            raise ValueError("each (id, version) appears once in the registry")
        enabled_ids = [s.id for s in self.suites if s.enabled]
        if len(set(enabled_ids)) != len(enabled_ids):
            raise ValueError("at most one version of a suite is enabled")
        return self

    def get(self, suite_id: str, version: str) -> SuiteSpec | None:
        return next((s for s in self.suites if s.key == (suite_id, version)), None)

    def enabled(self) -> list[SuiteSpec]:
        return [s for s in self.suites if s.enabled]


def load_registry(path: Path) -> SuiteRegistry:
    """Parse and validate a registry file (YAML or JSON)."""
    return SuiteRegistry.model_validate(yaml.safe_load(path.read_text()))
