"""Covered-model criteria: loaded from a versioned config file, applied to a declared model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.events.common import ModelInfo, PolicyVersion, Slug
from contracts.events.intake import AcceptanceReason


class CoverageCriteria(BaseModel):
    """The config file's content (services/intake/criteria.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: PolicyVersion
    training_compute_flop_at_least: float = Field(gt=0, allow_inf_nan=False)
    covered_capabilities: frozenset[Slug] = frozenset()


def load_criteria(path: Path) -> CoverageCriteria:
    return CoverageCriteria.model_validate(yaml.safe_load(path.read_text()))


@dataclass(frozen=True)
class Coverage:
    """Why a model is covered, or ``reason is None`` with the explanation why it is not."""

    reason: AcceptanceReason | None
    detail: str


def assess_coverage(model: ModelInfo, criteria: CoverageCriteria) -> Coverage:
    threshold = criteria.training_compute_flop_at_least
    by_compute = model.training_compute_flop >= threshold
    matched = sorted(set(model.declared_capabilities) & criteria.covered_capabilities)
    compute = f"training compute {model.training_compute_flop:.3g} FLOP"
    version = f"(criteria {criteria.version})"
    if by_compute and matched:
        return Coverage(
            AcceptanceReason.COVERED_BY_COMPUTE_AND_CAPABILITY,
            f"{compute} >= {threshold:.3g} FLOP and declared covered capabilities "
            f"{', '.join(matched)} {version}",
        )
    if by_compute:
        return Coverage(
            AcceptanceReason.COVERED_BY_COMPUTE, f"{compute} >= {threshold:.3g} FLOP {version}"
        )
    if matched:
        return Coverage(
            AcceptanceReason.COVERED_BY_CAPABILITY,
            f"declared covered capabilities {', '.join(matched)} {version}",
        )
    declared = ", ".join(model.declared_capabilities) or "none"
    return Coverage(
        None,
        f"not a covered model {version}: {compute} < {threshold:.3g} FLOP and no declared "
        f"capability ({declared}) is in the covered list",
    )
