"""A published policy text, parsed once, and the decision over it (with its cache).

``LoadedPolicy.parse`` validates the text against the shared schema, refuses
anything an enforcer could misread (a policy without ``@id`` or reason, a forbid
without its order, a resource other than the model, templates), and keeps the
pre-parsed ``cedarpy.PolicySet`` plus what Cedar does not report: the annotations
of each policy. ``decide`` derives the principal's entities at the decision time
and evaluates; a Cedar evaluation error denies (Cedar itself would skip an
erroring forbid, which would fail open).

The cache is per loaded version (a new version brings an empty cache). Its key
is everything the decision can depend on: the derived attributes, the action,
the window segment of the time (between two consecutive order boundaries the
time cannot change the outcome), and the principal and organisation ids only
when the policy text mentions them (exemptions, organisation criteria).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import cedarpy

from contracts.policy import cedar
from contracts.policy.cedar import Action
from contracts.policy.decision import Decision, DecisionBasis, DecisionReason
from contracts.policy.entities import DerivedAttributes, cedar_request, derive
from contracts.policy.principal import Attribute, Principal, RequestContext

DEFAULT_CACHE_SIZE = 100_000
MAX_ERROR_REASONS = 5


class UnusablePolicy(ValueError):
    """The text cannot be enforced as published (parse, validation or shape error)."""


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """A compiled policy's annotations."""

    policy_id: str
    kind: str
    reason: str
    order_id: UUID | None
    criterion: str | None
    needs: frozenset[Attribute]

    def as_reason(self, derived: DerivedAttributes) -> DecisionReason:
        missing = sorted(a.value for a in self.needs & derived.unknown)
        return DecisionReason.model_construct(
            policy_id=self.policy_id,
            order_id=self.order_id,
            criterion=self.criterion,
            kind=self.kind,
            text=self.reason,
            missing_attributes=missing,
        )


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


_STRUCTURE = frozenset({"Var", "Value", ".", "attr", "left", "right", "arg", "&&", "||", "!"})
_COMPARISONS = frozenset({"==", "contains", "containsAny", "in", "<", ">="})


def _literal(node: Any) -> bool:
    """A literal operand: a value, a set of literals, or an extension call on literals."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    ((key, value),) = node.items()
    if key == "Value":
        return True
    if key == "Set":
        return isinstance(value, list) and all(_literal(item) for item in value)
    if key == "datetime":
        return isinstance(value, list) and all(_literal(item) for item in value)
    return False


def _entity_literal(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and isinstance(node.get("Value"), dict)
        and ("__entity" in node["Value"])
    )


def _projectable(node: Any) -> bool:
    """Does the condition read attributes only by comparing them with literals?

    Then a decision depends on a set attribute only through its intersection with
    the literals the text mentions, and on a string attribute only through
    whether it is one of them: the cache key may drop everything else. A text
    using any other operation (``isEmpty``, ``like``, ``has``, attribute against
    attribute, a set compared whole with ``==``...) keeps full keys.
    """
    if isinstance(node, list):
        return all(_projectable(item) for item in node)
    if not isinstance(node, dict):
        return True
    for key, value in node.items():
        if key in _COMPARISONS:
            if not isinstance(value, dict):
                return False
            left, right = value.get("left"), value.get("right")
            if key == "==":
                sides_ok = _entity_literal(left) or _entity_literal(right)
            elif key in ("in", "<", ">="):
                sides_ok = _literal(right)
            else:
                sides_ok = _literal(left) or _literal(right)
            if not (sides_ok and _projectable(left) and _projectable(right)):
                return False
        elif key == "Value":
            continue
        elif key == "Set" or key == "datetime":
            if not _projectable(value):
                return False
        elif key not in _STRUCTURE or not _projectable(value):
            return False
    return True


def _timestamp(value: str, policy_id: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UnusablePolicy(f"{policy_id}: bad time annotation {value!r}") from None
    if parsed.tzinfo is None:
        raise UnusablePolicy(f"{policy_id}: time annotation {value!r} has no offset")
    return parsed


def _info(cedar_id: str, policy: dict[str, Any], model_id: str) -> tuple[PolicyInfo, list[str]]:
    notes = policy.get("annotations") or {}
    policy_id = notes.get(cedar.ID)
    if not policy_id:
        raise UnusablePolicy(f"policy {cedar_id} has no @id")
    for key in (cedar.KIND, cedar.REASON):
        if not notes.get(key):
            raise UnusablePolicy(f"policy {policy_id} has no @{key}")
    resource = policy.get("resource") or {}
    target = resource.get("entity") or {}
    if resource.get("op") != "==" or target != {"type": cedar.MODEL, "id": model_id}:
        raise UnusablePolicy(f"policy {policy_id} is not about resource Model {model_id!r}")
    order_id: UUID | None = None
    if policy.get("effect") == "forbid":
        try:
            order_id = UUID(notes.get(cedar.ORDER_ID, ""))
        except ValueError:
            raise UnusablePolicy(f"forbid policy {policy_id} names no order") from None
    try:
        needs = frozenset(Attribute(a) for a in notes.get(cedar.NEEDS, "").split(",") if a)
    except ValueError:
        raise UnusablePolicy(f"policy {policy_id}: unknown attribute in @needs") from None
    times = [notes[k] for k in (cedar.EFFECTIVE_AT, cedar.EXPIRES_AT) if notes.get(k)]
    info = PolicyInfo(
        policy_id=policy_id,
        kind=notes[cedar.KIND],
        reason=notes[cedar.REASON],
        order_id=order_id,
        criterion=notes.get(cedar.CRITERION) or None,
        needs=needs,
    )
    return info, times


class LoadedPolicy:
    """One version of one model's policy, parsed and ready to decide."""

    def __init__(
        self,
        *,
        model_id: str,
        version: int,
        content_hash: str,
        policy_set: cedarpy.PolicySet,
        infos: dict[str, PolicyInfo],
        boundaries: tuple[datetime, ...],
        mentioned: frozenset[str],
        projectable: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.model_id = model_id
        self.version = version
        self.content_hash = content_hash
        self.policy_set = policy_set
        self.infos = infos
        self.boundaries = boundaries
        self.mentioned = mentioned
        self.projectable = projectable
        self.order_ids = frozenset(i.order_id for i in infos.values() if i.order_id is not None)
        self._cache: dict[Hashable, tuple[bool, DecisionBasis, tuple[DecisionReason, ...]]] = {}
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    @classmethod
    def parse(
        cls,
        model_id: str,
        version: int,
        text: str,
        content_hash: str,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> LoadedPolicy:
        """Parse and check a policy text (raises ``UnusablePolicy`` with the reason)."""
        try:
            policy_set = cedarpy.PolicySet.from_str(text)
            est = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            raise UnusablePolicy(f"the Cedar text does not parse: {exc}") from None
        validation = cedarpy.validate_policies(text, cedar.schema())
        if not validation.validation_passed:
            ids = validation.id_annotations_by_policy_id
            first = validation.errors[0] if validation.errors else None
            where = ids.get(first.policy_id, first.policy_id) if first else "?"
            raise UnusablePolicy(
                f"the policy does not validate against schema {cedar.SCHEMA_VERSION}: "
                f"{where}: {first.error if first else 'unknown error'}"
            )
        if est.get("templates"):
            raise UnusablePolicy("templates are not allowed in a published policy")
        infos: dict[str, PolicyInfo] = {}
        times: set[datetime] = set()
        for cedar_id, policy in (est.get("staticPolicies") or {}).items():
            info, stamps = _info(cedar_id, policy, model_id)
            infos[cedar_id] = info
            times.update(_timestamp(s, info.policy_id) for s in stamps)
        if len({i.policy_id for i in infos.values()}) != len(infos):
            raise UnusablePolicy("two policies share an @id")
        if not any(i.kind == "baseline" for i in infos.values()):
            raise UnusablePolicy("the policy has no baseline permit")
        return cls(
            model_id=model_id,
            version=version,
            content_hash=content_hash,
            policy_set=policy_set,
            infos=infos,
            boundaries=tuple(sorted(times)),
            mentioned=frozenset(_strings(est)),
            projectable=all(
                _projectable(c.get("body"))
                for p in est["staticPolicies"].values()
                for c in p.get("conditions") or []
            ),
            cache_size=cache_size,
        )

    def segment(self, at: datetime) -> int:
        """Which interval between order boundaries ``at`` falls in."""
        return bisect.bisect_right(self.boundaries, at)

    def _key(
        self, principal_id: str, derived: DerivedAttributes, action: Action, at: datetime
    ) -> Hashable:
        pid = principal_id if principal_id in self.mentioned else None
        oid = derived.organisation_id
        if oid is not None and oid not in self.mentioned:
            oid = "\x00member"  # membership of an unmentioned organisation decides nothing
        if not self.projectable:
            return (action, self.segment(at), pid, oid, derived)
        m = self.mentioned

        def read(name: str, values: frozenset[str]) -> frozenset[str]:
            return values & m if name in m else frozenset()  # an attribute never read: nothing

        status = derived.verification_status
        location = derived.location_country
        return (
            action,
            self.segment(at),
            pid,
            oid,
            read("nationalities_any", derived.nationalities_any),
            read("nationalities_most_recent", derived.nationalities_most_recent),
            read("residences", derived.residences),
            read("organisation_countries", derived.organisation_countries),
            derived.us_person if "us_person" in m else None,
            status if status is None or status in m else "\x00other",
            location if location is None or location in m else "\x00other",
            frozenset(a for a in derived.unknown if a.value in m),
        )

    def decide(
        self,
        principal: Principal,
        action: Action,
        request: RequestContext,
        at: datetime,
        *,
        use_cache: bool = True,
    ) -> Decision:
        """The decision for ``principal`` doing ``action`` on the model at ``at``."""
        derived = derive(principal, request, at)
        return self.decide_derived(principal.id, derived, action, at, use_cache=use_cache)

    def decide_derived(
        self,
        principal_id: str,
        derived: DerivedAttributes,
        action: Action,
        at: datetime,
        *,
        use_cache: bool = True,
    ) -> Decision:
        """As ``decide``, for attributes already derived at ``at``."""
        key = self._key(principal_id, derived, action, at) if use_cache else None
        cached = self._cache.get(key) if key is not None else None
        if cached is None:
            self.misses += 1
            cached = self._evaluate(principal_id, derived, action, at)
            if key is not None:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[key] = cached
        else:
            self.hits += 1
        allowed, basis, reasons = cached
        return Decision.model_construct(
            allowed=allowed,
            model_id=self.model_id,
            action=action,
            basis=basis,
            policy_version=self.version,
            content_hash=self.content_hash,
            decided_at=at,
            reasons=list(reasons),
        )

    def _evaluate(
        self, principal_id: str, derived: DerivedAttributes, action: Action, at: datetime
    ) -> tuple[bool, DecisionBasis, tuple[DecisionReason, ...]]:
        request, entities = cedar_request(principal_id, derived, self.model_id, action, at)
        result = cedarpy.is_authorized(request, self.policy_set, entities, cedar.schema())
        errors = result.diagnostics.errors
        if errors:
            texts = tuple(
                DecisionReason.model_construct(
                    policy_id="enforcer:evaluation-error",
                    order_id=None,
                    criterion=None,
                    kind="error",
                    text=f"Cedar evaluation error (fail closed): {error}"[:1000],
                    missing_attributes=[],
                )
                for error in errors[:MAX_ERROR_REASONS]
            )
            return False, DecisionBasis.EVALUATION_ERROR, texts
        reasons = tuple(
            self.infos[cid].as_reason(derived)
            for cid in sorted(result.diagnostics.reasons)
            if cid in self.infos
        )
        return result.allowed, DecisionBasis.POLICY, reasons
