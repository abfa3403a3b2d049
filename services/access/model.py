"""State types of the access service: restriction orders, model policy versions, refusals.

An order's life (``OrderRecord``)::

                 effective_at reached            expires_at reached
    ordered ─────────────────────────> effective ──────────────────> expired
       │                                 │  │
       │ lifted / superseded             │  └── lifted (a reviewer) ──> lifted
       └─────────────────────────────────┴───── superseded (a later order names it) ──> superseded

A superseding order that takes effect later does not end the order it replaces
at once (that would leave a gap): the replaced order stays in the policy with its
window cut at the successor's ``effective_at``, and the ``order-effective`` timer
stores its end then.

``ordered`` and ``effective`` are not stored transitions but the time: an order
is ``ordered`` before its ``effective_at`` and ``effective`` from then on, on
every clock (the enforcer's too, since the compiled policy carries the window in
``context.now`` guards). ``lifted``, ``superseded`` and ``expired`` are stored
ends (``OrderRecord.ended``): each publishes a new policy version without the
order. An expired order denies nobody even before its end is stored (the guard
in the policy text), so a late expiry timer never extends a restriction. Ends are
final: a lifted order is never re-activated; a new order is issued instead.

A model's policy (``ModelPolicy``) is versioned: version 1, 2, ... Each version
is the compilation of every order that is not ended (ordered or effective), the
time windows inside; a change of that set publishes version + 1. Lifting the last
order publishes a version without orders (everyone allowed), never a tombstone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from contracts.events.access import AccessPolicyPublished, EnforcedOrder
from contracts.events.risk import RestrictionOrdered


class OrderState(StrEnum):
    ORDERED = "ordered"  # issued, effective_at still ahead
    EFFECTIVE = "effective"
    LIFTED = "lifted"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


ENDED = frozenset({OrderState.LIFTED, OrderState.EXPIRED, OrderState.SUPERSEDED})


@dataclass(frozen=True)
class OrderRecord:
    """A restriction order as the access service keeps it."""

    order: RestrictionOrdered
    ended: OrderState | None = None  # lifted | expired | superseded, once it is final
    ended_at: datetime | None = None
    superseded_by: UUID | None = None
    lifted_by: str | None = None
    end_reason: str | None = None

    @property
    def order_id(self) -> UUID:
        return self.order.order_id

    def state_at(self, now: datetime) -> OrderState:
        if self.ended is not None:
            return self.ended
        if now < self.order.effective_at:
            return OrderState.ORDERED
        if self.order.expires_at is not None and now >= self.order.expires_at:
            return OrderState.EXPIRED  # due; the expiry timer stores the end
        return OrderState.EFFECTIVE

    @property
    def in_policy(self) -> bool:
        """Compiled into the model's policy: not ended (time windows are in the text)."""
        return self.ended is None

    def end(
        self,
        state: OrderState,
        at: datetime,
        *,
        superseded_by: UUID | None = None,
        lifted_by: str | None = None,
        reason: str | None = None,
    ) -> OrderRecord:
        return replace(
            self,
            ended=state,
            ended_at=at,
            superseded_by=superseded_by,
            lifted_by=lifted_by,
            end_reason=reason,
        )


@dataclass(frozen=True)
class ModelPolicy:
    """One published version of a model's policy."""

    model_id: str
    lab_id: str
    version: int
    cedar_policies: str
    content_hash: str
    orders: tuple[EnforcedOrder, ...]
    published_at: datetime
    acknowledge_by: datetime
    schema_version: str
    country_groups_version: str
    order_ids: tuple[UUID, ...] = field(default=())
    problems: tuple[str, ...] = ()  # orders compiled fail closed (README: uncompilable orders)

    @property
    def effective_at(self) -> datetime | None:
        return min((o.effective_at for o in self.orders), default=None)

    @property
    def expires_at(self) -> datetime | None:
        if not self.orders or any(o.expires_at is None for o in self.orders):
            return None
        return max(o.expires_at for o in self.orders if o.expires_at is not None)

    def published(self) -> AccessPolicyPublished:
        return AccessPolicyPublished(
            model_id=self.model_id,
            lab_id=self.lab_id,
            policy_version=self.version,
            cedar_policies=self.cedar_policies,
            order_ids=list(self.order_ids),
            content_hash=self.content_hash,
            published_at=self.published_at,
            acknowledge_by=self.acknowledge_by,
            orders=list(self.orders),
            effective_at=self.effective_at,
            expires_at=self.expires_at,
            cedar_schema_version=self.schema_version,
            country_groups_version=self.country_groups_version,
        )

    @classmethod
    def from_published(cls, event: AccessPolicyPublished) -> ModelPolicy:
        return cls(
            model_id=event.model_id,
            lab_id=event.lab_id,
            version=event.policy_version,
            cedar_policies=event.cedar_policies,
            content_hash=event.content_hash,
            orders=tuple(event.orders),
            published_at=event.published_at,
            acknowledge_by=event.acknowledge_by,
            schema_version=event.cedar_schema_version or "",
            country_groups_version=event.country_groups_version or "",
            order_ids=tuple(event.order_ids),
        )


def lab_of(model_id: str) -> str:
    """The lab of a model id ``<lab_id>/<name>@<version>``."""
    return model_id.split("/", 1)[0]
