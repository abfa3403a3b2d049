"""The embeddable enforcer: a lab's serving gateway asks it before a model answers.

It holds the latest applied policy version of every model of the lab, as
pre-parsed ``cedarpy`` handles (``contracts.policy.LoadedPolicy``), and answers
``check(principal, model, action, request)`` in-process. The feed reader (which
follows the lab's compacted policy feed) calls ``apply(published)`` for every
record and ``mark_caught_up()`` whenever it has read to the end offsets.

The rules it keeps:

- **Not ready until caught up.** Until the first ``mark_caught_up()`` every
  check is denied (``not_ready``) for every model: a gateway that started before
  it knew the current policies must not allow what they forbid.
- **Versions only move forward.** A version older than the one applied for the
  model is ignored (``stale``); the same version again is a ``duplicate`` when
  its content hash matches and a ``conflict`` (fail closed) when not. So no
  answer is ever given under a version older than one already applied.
- **Atomic swap.** A new version is parsed and validated before it replaces the
  old one; checks see the old or the new handle, never a mix.
- **No policy vs a bad policy.** A model for which no policy was ever published
  is unrestricted: allowed (``unrestricted``; the agency publishes a policy for
  every restricted model). A model whose latest version cannot be used (does
  not parse or validate, unknown schema version, conflicting content) is denied
  for everyone (``unusable_policy``) until a usable later version arrives: the
  agency meant to change something, and the older text may allow what it forbids.
- **Time windows** are evaluated at the check's time (``context.now``): an
  order published ahead applies at its ``effective_at``, an expired one stops
  denying, without another publication.
- **Decision cache** per applied version (it goes with the version).
- **Age of the view**: ``status().view_age_s`` = seconds since the feed was last
  known to be read to its end.
- **Metrics** (``enforcer.metrics``, metrics.py): every decision by outcome and
  basis, the applied version of every model, readiness and the view's age.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from contracts.events.access import AccessPolicyPublished
from contracts.policy.cedar import SCHEMA_VERSION, Action
from contracts.policy.decision import Decision, DecisionBasis, DecisionReason
from contracts.policy.evaluate import DEFAULT_CACHE_SIZE, LoadedPolicy, UnusablePolicy
from contracts.policy.principal import Principal, RequestContext
from services.labclient.metrics import EnforcerMetrics

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ApplyResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this version is applied already
    STALE = "stale"  # older than the applied version: ignored
    UNUSABLE = "unusable"  # applied, but cannot be enforced: the model fails closed
    CONFLICT = "conflict"  # same version, other content: the model fails closed
    OTHER_LAB = "other_lab"  # not this lab's model: ignored


@dataclass(frozen=True)
class AppliedVersion:
    """What the enforcer enforces for one model (the lab's acknowledgement quotes it)."""

    model_id: str
    version: int
    content_hash: str
    order_ids: tuple[UUID, ...]
    published_at: datetime
    applied_at: datetime
    problem: str | None = None  # why the model fails closed, if it does

    @property
    def usable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class EnforcerStatus:
    ready: bool
    caught_up_at: datetime | None
    view_age_s: float | None
    models: dict[str, AppliedVersion]


@dataclass(frozen=True)
class _Entry:
    applied: AppliedVersion
    policy: LoadedPolicy | None  # None: unusable, fail closed


class Enforcer:
    """Policy versions per model and in-process decisions (see the module doc)."""

    def __init__(
        self,
        *,
        lab_id: str | None = None,
        clock: Clock = utc_now,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.lab_id = lab_id
        self.clock = clock
        self.cache_size = cache_size
        self._entries: dict[str, _Entry] = {}
        self._caught_up_at: datetime | None = None
        self._lock = threading.Lock()
        self.metrics = EnforcerMetrics(self)

    # the feed reader's side --------------------------------------------------------
    def apply(self, published: AccessPolicyPublished) -> ApplyResult:
        """Take one record of the policy feed (any order, duplicates, stale ones)."""
        model_id = published.model_id
        if self.lab_id is not None and (
            published.lab_id != self.lab_id or model_id.split("/", 1)[0] != self.lab_id
        ):
            return ApplyResult.OTHER_LAB
        current = self._entries.get(model_id)
        if current is not None and published.policy_version < current.applied.version:
            return ApplyResult.STALE
        if current is not None and published.policy_version == current.applied.version:
            if published.content_hash == current.applied.content_hash:
                return ApplyResult.DUPLICATE
            return self._install(
                published, None, "two different texts were published as this version"
            )
        policy: LoadedPolicy | None = None
        problem: str | None = None
        if published.cedar_schema_version not in (None, SCHEMA_VERSION):
            problem = f"unknown Cedar schema version {published.cedar_schema_version!r}"
        else:
            try:
                policy = LoadedPolicy.parse(
                    model_id,
                    published.policy_version,
                    published.cedar_policies,
                    published.content_hash,
                    cache_size=self.cache_size,
                )
            except UnusablePolicy as exc:
                problem = str(exc)
        return self._install(published, policy, problem)

    def _install(
        self, published: AccessPolicyPublished, policy: LoadedPolicy | None, problem: str | None
    ) -> ApplyResult:
        applied = AppliedVersion(
            model_id=published.model_id,
            version=published.policy_version,
            content_hash=published.content_hash,
            order_ids=tuple(published.order_ids),
            published_at=published.published_at,
            applied_at=self.clock(),
            problem=problem,
        )
        with self._lock:
            current = self._entries.get(published.model_id)
            if current is not None and published.policy_version < current.applied.version:
                return ApplyResult.STALE  # a newer one won the race while this one was parsed
            conflict = current is not None and published.policy_version == current.applied.version
            if conflict and current is not None and current.policy is None:
                return ApplyResult.CONFLICT  # already failing closed
            entries = dict(self._entries)
            entries[published.model_id] = _Entry(applied, policy)
            self._entries = entries  # the swap: one reference assignment
        if conflict:
            return ApplyResult.CONFLICT
        return ApplyResult.APPLIED if policy is not None else ApplyResult.UNUSABLE

    def unreadable(self, model_id: str, problem: str) -> None:
        """The feed had a record for ``model_id`` that is not a readable policy: the model
        fails closed (``unusable_policy``) until a later version than any applied arrives."""
        if self.lab_id is not None and model_id.split("/", 1)[0] != self.lab_id:
            return
        with self._lock:
            current = self._entries.get(model_id)
            applied = AppliedVersion(
                model_id=model_id,
                version=current.applied.version if current is not None else 0,
                content_hash="",
                order_ids=(),
                published_at=current.applied.published_at if current else self.clock(),
                applied_at=self.clock(),
                problem=problem,
            )
            entries = dict(self._entries)
            entries[model_id] = _Entry(applied, None)
            self._entries = entries

    def mark_caught_up(self) -> None:
        """The feed has been read to its end offsets (at start, and whenever it is again)."""
        self._caught_up_at = self.clock()

    # the gateway's side ------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._caught_up_at is not None

    def applied(self, model_id: str) -> AppliedVersion | None:
        entry = self._entries.get(model_id)
        return entry.applied if entry is not None else None

    def status(self) -> EnforcerStatus:
        now = self.clock()
        caught_up = self._caught_up_at
        return EnforcerStatus(
            ready=caught_up is not None,
            caught_up_at=caught_up,
            view_age_s=(now - caught_up).total_seconds() if caught_up is not None else None,
            models={m: e.applied for m, e in self._entries.items()},
        )

    def check(
        self,
        principal: Principal,
        model_id: str,
        action: Action = Action.INVOKE,
        request: RequestContext | None = None,
        *,
        at: datetime | None = None,
    ) -> Decision:
        """May ``principal`` do ``action`` on ``model_id`` now (or at ``at``)?"""
        decision = self._decide(principal, model_id, action, request, at or self.clock())
        self.metrics.decided(decision)
        return decision

    def _decide(
        self,
        principal: Principal,
        model_id: str,
        action: Action,
        request: RequestContext | None,
        now: datetime,
    ) -> Decision:
        if self._caught_up_at is None:
            return _refused(
                model_id,
                action,
                now,
                DecisionBasis.NOT_READY,
                None,
                "enforcer:not-ready",
                "the enforcer has not yet read the policy feed to its end (fail closed)",
            )
        entry = self._entries.get(model_id)
        if entry is None:
            return Decision.model_construct(
                allowed=True,
                model_id=model_id,
                action=action,
                basis=DecisionBasis.UNRESTRICTED,
                policy_version=None,
                content_hash=None,
                decided_at=now,
                reasons=[
                    DecisionReason.model_construct(
                        policy_id="enforcer:no-policy",
                        order_id=None,
                        criterion=None,
                        kind="baseline",
                        text=f"no access policy was ever published for {model_id}",
                        missing_attributes=[],
                    )
                ],
            )
        if entry.policy is None:
            return _refused(
                model_id,
                action,
                now,
                DecisionBasis.UNUSABLE_POLICY,
                entry.applied,
                "enforcer:unusable-policy",
                f"policy version {entry.applied.version} cannot be enforced "
                f"({entry.applied.problem}); fail closed",
            )
        return entry.policy.decide(principal, action, request or RequestContext(), now)

    def check_batch(
        self,
        items: Sequence[tuple[Principal, str, Action, RequestContext | None]],
        *,
        at: datetime | None = None,
    ) -> list[Decision]:
        """Several checks at one decision time."""
        now = at or self.clock()
        return [self.check(p, m, a, r, at=now) for p, m, a, r in items]


def _refused(
    model_id: str,
    action: Action,
    at: datetime,
    basis: DecisionBasis,
    applied: AppliedVersion | None,
    policy_id: str,
    text: str,
) -> Decision:
    return Decision.model_construct(
        allowed=False,
        model_id=model_id,
        action=action,
        basis=basis,
        policy_version=applied.version if applied else None,
        content_hash=applied.content_hash if applied else None,
        decided_at=at,
        reasons=[
            DecisionReason.model_construct(
                policy_id=policy_id,
                order_id=None,
                criterion=None,
                kind="enforcer",
                text=text,
                missing_attributes=[],
            )
        ],
    )
