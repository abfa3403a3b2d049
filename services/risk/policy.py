"""The thresholds policy: a versioned YAML file that says how findings become risk levels
and what each level sets in motion.

Per risk domain and capability, score bands map a finding's score to low / moderate /
high / critical, with an alert threshold below the escalation bar (an early warning, in
the manner of Google DeepMind's alert thresholds); per domain, the escalation bar and how
manual findings count; per level, how many distinct reviewers must sign a decision, the
decision deadline, the recommended actions and whether an interim restriction is ordered
at once, with its scope. See services/risk/README.md for the format and the frameworks it
borrows from, and services/risk/policies/ for the shipped versions.

A policy is loaded once, at start. A malformed file stops the service with a message that
names the line and the field of every problem (``PolicyError``): pydantic's error
locations are mapped back onto the YAML nodes, whose marks PyYAML's composer keeps.
A changed policy is a new file with a new version; every assessment names the version it
used, and ``check_unchanged`` refuses a file whose content changed under a known version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.events.common import RiskDomain, RiskLevel, Slug
from contracts.events.risk import Exemption, RecommendedAction, RestrictionScope

FORBID = ConfigDict(frozen=True, extra="forbid")
POLICY_GLOB = "thresholds-*.yaml"
POLICY_DIR = Path(__file__).parent / "policies"
SHIPPED_VERSION = "thresholds-2026.2"  # the default; older versions stay for history

Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
PolicyName = Annotated[
    str, StringConstraints(pattern=r"^thresholds-[A-Za-z0-9][A-Za-z0-9._-]{0,50}$")
]
Location = tuple[str | int, ...]


class RuleViolation(ValueError):
    """A cross-field rule broken at ``path`` below the model that checks it.

    pydantic keeps the exception in the error's context, so the loader can point at
    the exact field instead of the enclosing mapping.
    """

    def __init__(self, path: Location, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class ManualFindings(StrEnum):
    """How manual findings (external evaluators, red teams) count in a domain."""

    COUNT = "count"  # banded like automated findings
    # counted only when another evaluator's finding in the same domain (an automated
    # suite, or another red team) reaches the alert threshold of its own capability
    CORROBORATED = "corroborated"
    ADVISORY = "advisory"  # never changes the level; listed when it would have raised it


class ScoreBands(BaseModel):
    """Lower score bounds of the bands of one capability, and its alert threshold.

    A score below ``moderate`` is low. A null bound means findings of this capability
    never establish that level by themselves (e.g. a benign proxy suite that can raise
    an alert but cannot show high uplift); scores above the highest set bound stay in
    that band. The set bounds must rise strictly with the level.
    """

    model_config = FORBID

    alert: Score
    moderate: Score | None
    high: Score | None
    critical: Score | None

    @model_validator(mode="after")
    def _rising(self) -> Self:
        previous: tuple[RiskLevel, float] | None = None
        for level in (RiskLevel.MODERATE, RiskLevel.HIGH, RiskLevel.CRITICAL):
            bound = self.bound(level)
            if bound is None:
                continue
            if previous is not None and bound <= previous[1]:
                raise RuleViolation(
                    (level.value,),
                    f"the {level} bound ({bound}) must be above the {previous[0]} bound "
                    f"({previous[1]}): bands rise with the level",
                )
            previous = (level, bound)
        return self

    def bound(self, level: RiskLevel) -> float | None:
        """The lowest score of ``level``'s band (None for low, or an unreachable level)."""
        if level is RiskLevel.LOW:
            return None
        value: float | None = getattr(self, level.value)
        return value

    def band(self, score: float) -> tuple[RiskLevel, float | None]:
        """The level a score falls in, and that band's lower bound."""
        for level in (RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MODERATE):
            bound = self.bound(level)
            if bound is not None and score >= bound:
                return level, bound
        return RiskLevel.LOW, None


class DomainPolicy(BaseModel):
    """One risk domain: its escalation bar, manual findings rule and score bands."""

    model_config = FORBID

    escalation_bar: RiskLevel = Field(description="Levels at or above it are escalated.")
    manual_findings: ManualFindings
    default: ScoreBands = Field(description="Bands for capabilities not listed below.")
    capabilities: dict[Slug, ScoreBands] = Field(default_factory=dict)

    @field_validator("escalation_bar")
    @classmethod
    def _bar_above_low(cls, bar: RiskLevel) -> RiskLevel:
        if bar is RiskLevel.LOW:
            raise ValueError("the escalation bar must be moderate, high or critical")
        return bar

    @model_validator(mode="after")
    def _alert_below_bar(self) -> Self:
        named: list[tuple[Location, ScoreBands]] = [(("default",), self.default)]
        named += [(("capabilities", name), bands) for name, bands in self.capabilities.items()]
        for path, bands in named:
            bar_bound = bands.bound(self.escalation_bar)
            if bar_bound is not None and bands.alert >= bar_bound:
                raise RuleViolation(
                    (*path, "alert"),
                    f"the alert threshold ({bands.alert}) must be below the escalation bar's "
                    f"bound ({self.escalation_bar} from {bar_bound}): the early-warning band "
                    "lies below the bar",
                )
        return self

    def bands(self, capability: str) -> ScoreBands:
        return self.capabilities.get(capability, self.default)


class PolicyExemption(Exemption):
    model_config = FORBID


class PolicyScope(RestrictionScope):
    """A restriction scope in the policy file: unknown fields are errors, not ignored."""

    model_config = FORBID

    exemptions: list[PolicyExemption] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=1000, description="Never denied."
    )


class InterimRestriction(BaseModel):
    """The restriction ordered at once, pending the reviewers, at a level that imposes one."""

    model_config = FORBID

    scope: PolicyScope
    compliance_within: timedelta = Field(
        description="The lab must acknowledge enforcement within this time of the order."
    )

    @field_validator("compliance_within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. PT4H")
        return value


class LevelResponse(BaseModel):
    """What an escalation at this level sets in motion."""

    model_config = FORBID

    reviewers_required: int = Field(
        ge=1, le=20, description="Distinct reviewers who must sign the same decision."
    )
    decision_deadline: timedelta
    recommended_actions: list[RecommendedAction] = Field(min_length=1)
    interim_restriction: InterimRestriction | None = None

    @field_validator("decision_deadline")
    @classmethod
    def _deadline(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. P3D")
        return value

    @field_validator("recommended_actions")
    @classmethod
    def _unique(cls, actions: list[RecommendedAction]) -> list[RecommendedAction]:
        if len(set(actions)) != len(actions):
            raise ValueError("each action is listed once")
        return actions


class IncompleteEvaluation(BaseModel):
    """How a domain that was not fully tested is assessed."""

    model_config = FORBID

    # A domain with a planned suite that failed, was stopped by the window or cancelled,
    # or with no suite at all once the evaluation ended, is at least this level
    # (null: findings alone decide; the domain is still flagged incomplete).
    untested_domain_floor: RiskLevel | None


class ReviewRules(BaseModel):
    model_config = FORBID

    # After the window closes, how long the conclusion waits for the evaluation's own
    # end (EvaluationCompleted) before concluding on what it has.
    conclusion_grace: timedelta = Field(default=timedelta(hours=1))

    @field_validator("conclusion_grace")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value


class ThresholdsPolicy(BaseModel):
    """The content of one policy file (services/risk/policies/thresholds-<version>.yaml)."""

    model_config = FORBID

    version: PolicyName
    description: str = Field(min_length=1, max_length=2000)
    domains: dict[RiskDomain, DomainPolicy]
    levels: dict[RiskLevel, LevelResponse]
    incomplete_evaluation: IncompleteEvaluation
    review: ReviewRules = Field(default_factory=ReviewRules)

    _sha256: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing = [d.value for d in RiskDomain if d not in self.domains]
        if missing:
            raise RuleViolation(
                ("domains",), f"every risk domain needs an entry; missing {missing}"
            )
        lowest_bar = min((d.escalation_bar for d in self.domains.values()), key=lambda v: v.rank)
        for level in RiskLevel:
            if level.rank >= lowest_bar.rank and level not in self.levels:
                raise RuleViolation(
                    ("levels",),
                    f"level {level} can be escalated (a domain's escalation bar is "
                    f"{lowest_bar}) and needs an entry",
                )
        if RiskLevel.LOW in self.levels:
            raise RuleViolation(("levels", "low"), "low is never escalated; remove its entry")
        ordered = sorted(self.levels.items(), key=lambda item: item[0].rank)
        for (lower, low), (higher, high) in pairwise(ordered):
            if high.reviewers_required < low.reviewers_required:
                raise RuleViolation(
                    ("levels", higher.value, "reviewers_required"),
                    f"{higher} needs at least as many reviewers as {lower} "
                    f"({low.reviewers_required})",
                )
        return self

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the file the policy was loaded from ('' if built in code)."""
        return self._sha256

    def domain(self, domain: RiskDomain) -> DomainPolicy:
        return self.domains[domain]

    def response(self, level: RiskLevel) -> LevelResponse | None:
        """What an escalation at ``level`` does (None below every escalation bar)."""
        return self.levels.get(level)


# --- loading -----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyProblem:
    """One problem in a policy file: where (1-based line and column) and in which field."""

    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.line else "(no position)"
        return f"{where}: {self.field or '<document>'}: {self.message}"


class PolicyError(Exception):
    """The policy file cannot be used; ``problems`` says where and why."""

    def __init__(self, path: Path, problems: Sequence[PolicyProblem]) -> None:
        self.path = path
        self.problems = list(problems)
        listed = "\n".join(f"  {path}: {problem}" for problem in self.problems)
        super().__init__(f"invalid thresholds policy {path}:\n{listed}")


def load_policy(path: Path) -> ThresholdsPolicy:
    """Parse and validate a policy file; raises ``PolicyError`` naming line and field."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(path, [PolicyProblem(None, None, "", f"cannot read: {exc}")]) from None
    try:
        text = raw.decode("utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise PolicyError(path, [PolicyProblem(None, None, "", f"not UTF-8: {exc}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise PolicyError(path, [PolicyProblem(line, column, "", message)]) from None
    if not isinstance(root, yaml.MappingNode):
        line, column = _position(root) if root is not None else (None, None)
        raise PolicyError(path, [PolicyProblem(line, column, "", "the policy must be a mapping")])
    duplicates = list(_duplicate_keys(root, ()))
    if duplicates:
        raise PolicyError(path, duplicates)
    data = yaml.safe_load(text)
    try:
        policy = ThresholdsPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, [_problem(root, error) for error in exc.errors()]) from None
    if policy.version != path.stem:
        node, _ = _locate(root, ("version",))
        line, column = _position(node)
        raise PolicyError(
            path,
            [
                PolicyProblem(
                    line,
                    column,
                    "version",
                    f"{policy.version!r} must equal the file name {path.stem!r}: "
                    "a new policy is a new file with a new version",
                )
            ],
        )
    policy._sha256 = hashlib.sha256(raw).hexdigest()
    return policy


@dataclass(frozen=True)
class PolicyFile:
    version: str
    path: Path


def available_policies(directory: Path) -> list[PolicyFile]:
    """The policy files in ``directory``, by version (not loaded)."""
    return [PolicyFile(path.stem, path) for path in sorted(directory.glob(POLICY_GLOB))]


def load_active(directory: Path, version: str) -> ThresholdsPolicy:
    """The policy ``version`` from ``directory`` (the service's setting names it)."""
    path = directory / f"{version}.yaml"
    if not path.is_file():
        known = ", ".join(p.version for p in available_policies(directory)) or "none"
        raise PolicyError(
            path,
            [
                PolicyProblem(
                    None, None, "", f"no policy {version!r} in {directory} (known: {known})"
                )
            ],
        )
    return load_policy(path)


def check_unchanged(policy: ThresholdsPolicy, known: Mapping[str, str]) -> str | None:
    """Why ``policy`` must not be used, given the (version -> sha256) already recorded.

    A version names one content forever: assessments that cite it must stay explainable.
    """
    recorded = known.get(policy.version)
    if recorded is not None and recorded != policy.sha256:
        return (
            f"policy {policy.version} changed since it was first used (sha256 {recorded[:12]}... "
            f"recorded, {policy.sha256[:12]}... now): give the new content a new version"
        )
    return None


# --- mapping validation errors onto the YAML ----------------------------------------


def _problem(root: yaml.MappingNode, error: Mapping[str, Any]) -> PolicyProblem:
    loc: Location = tuple(error["loc"])
    message = str(error["msg"])
    violation = (error.get("ctx") or {}).get("error")
    if isinstance(violation, RuleViolation):
        loc = (*loc, *violation.path)
        message = violation.message
    node, found = _locate(root, loc)
    line, column = _position(node)
    field = ".".join(str(part) for part in loc if part != "[key]")
    if not found and error["type"] == "missing":
        message = f"{message} (in the mapping that starts here)"
    return PolicyProblem(line, column, field, message)


def _locate(root: yaml.Node, loc: Location) -> tuple[yaml.Node, bool]:
    """The node at ``loc`` (a pydantic error location), or the deepest existing parent."""
    node = root
    for index, part in enumerate(loc):
        if part == "[key]":
            continue
        key_wanted = index + 1 < len(loc) and loc[index + 1] == "[key]"
        if isinstance(node, yaml.MappingNode):
            pair = next((p for p in node.value if p[0].value == str(part)), None)
            if pair is None:
                return node, False
            node = pair[0] if key_wanted else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node, False
            node = node.value[part]
        else:
            # a scalar where pydantic looked deeper (union members, type tags): it is the culprit
            return node, True
    return node, True


def _position(node: yaml.Node) -> tuple[int | None, int | None]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _duplicate_keys(node: yaml.Node, path: Location) -> Iterable[PolicyProblem]:
    """PyYAML keeps the last of two equal keys; in a policy that hides a threshold."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                line, column = _position(key)
                first, _ = _position(seen[name])
                yield PolicyProblem(
                    line,
                    column,
                    ".".join(str(p) for p in (*path, name)),
                    f"duplicate key (first defined on line {first})",
                )
            else:
                seen[name] = key
            yield from _duplicate_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))
