"""The deployment files set only settings the services read.

A misspelt or renamed FR_* variable in docker-compose.yml or deploy/k8s is silently
ignored by pydantic-settings (``extra="ignore"``): the service starts with its
default, e.g. listening on loopback inside a container. These tests read every
container's environment and check each FR_* name against the settings class of the
module the container runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.access.settings import AccessSettings
from services.console.settings import ConsoleSettings
from services.evaluation.settings import EvaluationSettings
from services.intake.settings import IntakeSettings
from services.risk.settings import RiskSettings
from services.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("intake", "evaluation", "risk", "access")

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "services.intake": IntakeSettings,
    "services.evaluation": EvaluationSettings,
    "services.risk": RiskSettings,
    "services.access": AccessSettings,
    "services.console": ConsoleSettings,
    # The one-shot jobs (topics, principals, the risk CLI's keygen) read the runtime's.
    "services.runtime.topics": RuntimeSettings,
    "services.runtime.principals": RuntimeSettings,
}


def setting_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def module_of(command: Any) -> str | None:
    """The module a container's command runs with ``python -m`` (the first, for a shell)."""
    words = command if isinstance(command, list) else [command or ""]
    text = " ".join(str(w) for w in words).split()
    for i, word in enumerate(text[:-1]):
        if word == "-m":
            return text[i + 1]
    return None


def compose_containers() -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    document = yaml.safe_load(COMPOSE.read_text())
    for name, service in document["services"].items():
        yield name, module_of(service.get("command")), service.get("environment") or {}


def k8s_containers() -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document["kind"] not in {"Deployment", "Job"}:
                continue
            for container in document["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                uses_configmap = any(
                    "configMapRef" in source for source in container.get("envFrom", [])
                )
                yield (
                    f"{path.name}:{container['name']}",
                    module_of(container.get("command")),
                    (configmap if uses_configmap else {}) | env,
                )


def unread(containers: Iterator[tuple[str, str | None, dict[str, Any]]]) -> list[str]:
    found = []
    for name, module, env in containers:
        names = {k for k in env if k.startswith("FR_")}
        if module is None or not names:
            continue
        settings = SETTINGS_OF.get(module)
        assert settings is not None, f"{name} runs {module}: which settings does it read?"
        found += [f"{name}: {k}" for k in sorted(names - setting_names(settings))]
    return found


def started(containers: Iterator[tuple[str, str | None, dict[str, Any]]]) -> set[str]:
    return {module.removeprefix("services.") for _, module, _ in containers if module}


def test_compose_sets_only_settings_the_services_read() -> None:
    assert unread(compose_containers()) == []


def test_kubernetes_sets_only_settings_the_services_read() -> None:
    assert unread(k8s_containers()) == []


@pytest.mark.parametrize("containers", [compose_containers, k8s_containers])
def test_every_service_is_deployed(
    containers: Any,
) -> None:
    assert set(SERVICES) <= started(containers())


def test_a_misspelt_setting_is_reported() -> None:
    containers = iter([("intake", "services.intake", {"FR_INTAKE_STATUS_HOST": "0.0.0.0"})])
    assert unread(containers) == ["intake: FR_INTAKE_STATUS_HOST"]
