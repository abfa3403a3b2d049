"""Impact preview: whom a proposed order would deny, before it is issued.

Streams a sample of a lab's customers (``services.access.sample``) through two
policies compiled exactly as they would be published: the current one (the
model's orders in force; none: everyone allowed) and the proposed one (those
orders plus the proposal, minus the order it supersedes). Decisions come from
``LoadedPolicy`` (the same code the labs' enforcers run), so the counts are the
enforcer's decisions on the same rows.

Memory is bounded whatever the sample size: counters, at most
``max_changed`` listed principals (all of them can go to ``on_changed``) and
``max_malformed`` listed malformed rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.events.risk import RestrictionOrdered
from contracts.policy.cedar import Action
from contracts.policy.decision import Decision
from contracts.policy.entities import derive
from contracts.policy.evaluate import LoadedPolicy
from services.access.compile import compile_order, compile_policy
from services.access.country_groups import CountryGroups
from services.access.model import ModelPolicy
from services.access.sample import MalformedRow, SampleFormat, SampleRow, read_sample
from services.trust.refusal import Refusal

UNKNOWN_COUNTRY = "unknown"
PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class ChangedPrincipal:
    """A principal allowed under the current policy and denied under the proposed one."""

    line: int
    principal_id: str
    reasons: tuple[str, ...]  # policy ids of the proposed policy that deny


class MalformedSample(ValueError):
    """A malformed row in a preview that was asked to stop at the first one."""

    def __init__(self, row: MalformedRow) -> None:
        super().__init__(f"line {row.line}: {row.error}")
        self.row = row


@dataclass
class ImpactReport:
    model_id: str
    at: datetime
    action: Action
    current_order_ids: list[str]
    proposed_order_ids: list[str]
    rows: int = 0
    malformed: int = 0
    malformed_rows: list[MalformedRow] = field(default_factory=list)
    denied_current: int = 0
    denied_proposed: int = 0
    newly_denied: int = 0
    newly_allowed: int = 0
    denied_by_reason: Counter[str] = field(default_factory=Counter)
    denied_by_country: Counter[str] = field(default_factory=Counter)
    newly_denied_by_reason: Counter[str] = field(default_factory=Counter)
    newly_denied_by_country: Counter[str] = field(default_factory=Counter)
    changed: list[ChangedPrincipal] = field(default_factory=list)

    @property
    def evaluated(self) -> int:
        return self.rows - self.malformed

    @property
    def changed_truncated(self) -> bool:
        return self.newly_denied > len(self.changed)


def _policy(
    model_id: str,
    orders: Sequence[RestrictionOrdered],
    groups: CountryGroups,
    *,
    fail_closed: bool = False,
) -> LoadedPolicy | Refusal | None:
    if not orders:
        return None  # no policy: everyone allowed (what an enforcer does without one)
    compiled = compile_policy(model_id, orders, groups, fail_closed=fail_closed)
    if isinstance(compiled, Refusal):
        return compiled
    return LoadedPolicy.parse(model_id, 1, compiled.cedar_policies, compiled.content_hash)


def _denying(decision: Decision) -> tuple[str, ...]:
    return tuple(r.policy_id for r in decision.reasons) if not decision.allowed else ()


def preview_impact(
    proposed: RestrictionOrdered,
    current: Sequence[RestrictionOrdered],
    lines: Iterable[bytes],
    *,
    fmt: SampleFormat,
    groups: CountryGroups,
    at: datetime,
    action: Action = Action.INVOKE,
    max_changed: int = 1000,
    max_malformed: int = 100,
    stop_on_malformed: bool = False,
    on_changed: Callable[[ChangedPrincipal], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    published: ModelPolicy | None = None,
) -> ImpactReport | Refusal:
    """Count the sample's decisions at ``at`` under the current and the proposed policy.

    ``current``: the model's orders in force (the service's view:
    ``queries.preview_basis``, or a file). ``published``: the model's current
    published version; when given, "now" is decided by that very text (what the
    lab enforces), else by ``current`` compiled. The proposal itself must compile
    as written (an unknown country group is refused, so reviewers hear of it before
    issuing); orders already in force are compiled as the service does, fail closed.
    Raises ``SampleError`` for an unreadable sample and, with ``stop_on_malformed``,
    ``MalformedSample`` at the first bad row; otherwise bad rows are counted and
    listed (up to ``max_malformed``) with line numbers.
    """
    model_id = proposed.model_id
    own = compile_order(proposed, groups)
    if isinstance(own, Refusal):
        return own
    in_force = [o for o in current if o.order_id not in {proposed.order_id, proposed.supersedes}]
    before: LoadedPolicy | Refusal | None
    if published is not None:
        before = LoadedPolicy.parse(
            model_id, published.version, published.cedar_policies, published.content_hash
        )
    else:
        before = _policy(model_id, current, groups, fail_closed=True)
    after = _policy(model_id, [*in_force, proposed], groups, fail_closed=True)
    if isinstance(before, Refusal):
        return before
    if isinstance(after, Refusal):
        return after
    assert after is not None  # the proposal itself is among the orders
    report = ImpactReport(
        model_id=model_id,
        at=at,
        action=action,
        current_order_ids=sorted(str(o.order_id) for o in current),
        proposed_order_ids=sorted(str(o.order_id) for o in [*in_force, proposed]),
    )
    for row in read_sample(lines, fmt):
        report.rows += 1
        if on_progress is not None and report.rows % PROGRESS_EVERY == 0:
            on_progress(report.rows)
        if isinstance(row, MalformedRow):
            if stop_on_malformed:
                raise MalformedSample(row)
            report.malformed += 1
            if len(report.malformed_rows) < max_malformed:
                report.malformed_rows.append(row)
            continue
        _count(report, row, before, after, at, action, max_changed, on_changed)
    if on_progress is not None:
        on_progress(report.rows)
    return report


def _count(
    report: ImpactReport,
    row: SampleRow,
    before: LoadedPolicy | None,
    after: LoadedPolicy,
    at: datetime,
    action: Action,
    max_changed: int,
    on_changed: Callable[[ChangedPrincipal], None] | None,
) -> None:
    derived = derive(row.principal, row.request, at)
    pid = row.principal.id
    was_allowed = before is None or before.decide_derived(pid, derived, action, at).allowed
    decision = after.decide_derived(pid, derived, action, at)
    countries = sorted(derived.nationalities_any) or [UNKNOWN_COUNTRY]
    if not was_allowed:
        report.denied_current += 1
    if decision.allowed:
        if not was_allowed:
            report.newly_allowed += 1
        return
    reasons = _denying(decision)
    report.denied_proposed += 1
    report.denied_by_reason.update(reasons)
    report.denied_by_country.update(countries)
    if was_allowed:
        report.newly_denied += 1
        report.newly_denied_by_reason.update(reasons)
        report.newly_denied_by_country.update(countries)
        changed = ChangedPrincipal(row.line, pid, reasons)
        if len(report.changed) < max_changed:
            report.changed.append(changed)
        if on_changed is not None:
            on_changed(changed)


def report_json(report: ImpactReport) -> dict[str, Any]:
    """The report as JSON (the CLI's ``--json`` and the agency API's answer)."""
    return {
        "model_id": report.model_id,
        "at": report.at.isoformat(),
        "action": report.action.value,
        "current_order_ids": report.current_order_ids,
        "proposed_order_ids": report.proposed_order_ids,
        "rows": report.rows,
        "evaluated": report.evaluated,
        "malformed": report.malformed,
        "malformed_rows": [{"line": r.line, "error": r.error} for r in report.malformed_rows],
        "denied_current": report.denied_current,
        "denied_proposed": report.denied_proposed,
        "newly_denied": report.newly_denied,
        "newly_allowed": report.newly_allowed,
        "denied_by_reason": dict(report.denied_by_reason.most_common()),
        "denied_by_country": dict(report.denied_by_country.most_common()),
        "newly_denied_by_reason": dict(report.newly_denied_by_reason.most_common()),
        "newly_denied_by_country": dict(report.newly_denied_by_country.most_common()),
        "changed": [
            {"line": c.line, "principal_id": c.principal_id, "reasons": list(c.reasons)}
            for c in report.changed
        ],
        "changed_truncated": report.changed_truncated,
    }
