"""Restriction orders -> one Cedar policy set per model, validated before it can be published.

Layout of a model's policy set (every policy carries ``@id``, ``@kind`` and a
human-readable ``@reason`` naming its order; see ``contracts.policy.cedar``):

- one baseline ``permit`` for the model: what no order forbids is allowed (the
  lab's own authorisation is the lab's business; this set only says whether an
  export restriction stands in the way);
- per order and criterion, a ``forbid`` that matches on known attributes
  (``@kind("match")``), and a ``forbid`` that denies when an attribute the
  criterion needs is unknown and the known ones do not already rule it out
  (``@kind("unknown")``, ``@needs`` names the attributes: fail closed);
- each of an order's forbids is guarded by its window
  (``context.now >= effective_at`` and, if time-limited, ``< expires_at``) and
  carries that order's exemptions as ``unless``: exemptions are per order, so a
  principal exempt from one order is still denied by another.

Cedar denies when any forbid matches, so several orders combine as "any
matching order denies unless that order exempts the principal".

Times are written with millisecond precision, rounded towards the stricter
side (effective earlier, expiry later). Strings from orders (ids, reviewer
names) are escaped by ``cedar_string``; the compiled text is parsed back and
checked by the same ``LoadedPolicy.parse`` an enforcer runs, so a text that
would not be enforced as meant is never returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.events.access import EnforcedOrder, policy_hash
from contracts.events.common import RejectionReason
from contracts.events.risk import (
    ExemptionKind,
    NationalityRule,
    RestrictionOrdered,
    RestrictionScope,
)
from contracts.policy import cedar
from contracts.policy.cedar import MODEL, ORGANISATION, PRINCIPAL, cedar_string, entity
from contracts.policy.evaluate import LoadedPolicy, UnusablePolicy
from contracts.policy.principal import Attribute
from services.access.country_groups import CountryGroups
from services.trust.refusal import Refusal

BASELINE_ID = "baseline"
LOCKDOWN = "lockdown"


@dataclass(frozen=True)
class CompiledPolicy:
    """A model's validated policy text and what it enforces."""

    model_id: str
    cedar_policies: str
    content_hash: str
    orders: tuple[EnforcedOrder, ...]
    schema_version: str
    country_groups_version: str
    problems: tuple[str, ...] = ()  # what could not be compiled as written (fail closed)

    @property
    def order_ids(self) -> tuple[str, ...]:
        return tuple(str(o.order_id) for o in self.orders)


def cedar_time(at: datetime, *, round_up: bool = False) -> str:
    """UTC with milliseconds, e.g. ``2026-01-16T13:00:00.000Z``."""
    at = at.astimezone(UTC)
    millis = at.microsecond / 1000
    whole = math.ceil(millis) if round_up else math.floor(millis)
    at = at.replace(microsecond=0) + timedelta(milliseconds=whole)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _set(values: Iterable[str]) -> str:
    return "[" + ", ".join(cedar_string(v) for v in sorted(values)) + "]"


def _unknown(*attributes: Attribute, on: str = "principal") -> str:
    return f"{on}.unknown.containsAny({_set(a.value for a in attributes)})"


def _known(*attributes: Attribute) -> str:
    return f"!{_unknown(*attributes)}"


US_PERSON_KNOWN_TRUE = f"({_known(Attribute.US_PERSON)} && principal.us_person)"
FOREIGN_PERSON_KNOWN = f"({_known(Attribute.US_PERSON)} && !principal.us_person)"


@dataclass(frozen=True)
class _Rule:
    """One forbid of an order: its criterion, kind, condition, needs, reason text."""

    criterion: str
    kind: str  # match | unknown
    condition: str
    needs: tuple[Attribute, ...]
    reason: str


def _countries(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def _foreign_person_rules(
    criterion: str,
    attribute: str,
    needs: tuple[Attribute, ...],
    countries: frozenset[str],
    what: str,
) -> list[_Rule]:
    """match / attribute unknown / US-person status unknown, for a foreign-national criterion."""
    contains = f"principal.{attribute}.containsAny({_set(countries)})"
    listed = _countries(countries)
    return [
        _Rule(
            criterion,
            "match",
            f"{FOREIGN_PERSON_KNOWN} && {_known(*needs)} && {contains}",
            (),
            f"{what} {listed}",
        ),
        _Rule(
            criterion,
            "unknown",
            f"!{US_PERSON_KNOWN_TRUE} && {_unknown(*needs)}",
            needs,
            f"{what} {listed} cannot be ruled out: "
            f"{' or '.join(a.value for a in needs)} unknown (fail closed)",
        ),
        _Rule(
            f"{criterion}.us_person",
            "unknown",
            f"{_unknown(Attribute.US_PERSON)} && {_known(*needs)} && {contains}",
            (Attribute.US_PERSON,),
            f"{what} {listed}, and US-person status unknown (fail closed)",
        ),
    ]


def _unknown_groups(names: list[str], groups: CountryGroups) -> Refusal:
    listed = ", ".join(repr(n) for n in names)
    return Refusal(
        RejectionReason.UNKNOWN_COUNTRY_GROUP,
        f"country group {listed} is not in the agency's country-group table "
        f"(version {groups.version})",
    )


def _rules(
    scope: RestrictionScope, groups: CountryGroups, *, fail_closed: bool = False
) -> list[_Rule] | Refusal:
    """The forbids of one scope. An unknown country group is refused, or with
    ``fail_closed`` compiled as a criterion that no foreign person can be shown to
    escape: the group could hold any country (see the README's uncompilable-order rule)."""
    named = [*scope.country_groups, *(tier.value for tier in scope.country_tiers)]
    unknown_groups = sorted({n for n in named if n not in groups.groups})
    if unknown_groups and not fail_closed:
        return _unknown_groups(unknown_groups, groups)
    grouped = groups.countries([n for n in named if n in groups.groups])
    assert not isinstance(grouped, str)
    rules: list[_Rule] = []
    if unknown_groups:
        rules.append(
            _Rule(
                "country_group",
                "unknown",
                f"!{US_PERSON_KNOWN_TRUE}",
                (),
                f"country group {', '.join(unknown_groups)} is not in the agency's "
                f"country-group table (version {groups.version}): no foreign person can be "
                "ruled out (fail closed)",
            )
        )
    nationals = frozenset(scope.nationalities) | grouped
    if nationals:
        most_recent = scope.nationality_rule is NationalityRule.MOST_RECENT
        rules += _foreign_person_rules(
            "nationality",
            "nationalities_most_recent" if most_recent else "nationalities_any",
            (Attribute.CITIZENSHIPS, Attribute.PERMANENT_RESIDENCIES),
            nationals,
            "foreign national (by "
            + ("most recent" if most_recent else "any")
            + " citizenship or permanent residency) of",
        )
    residents = frozenset(scope.residence_countries) | grouped
    if residents:
        rules += _foreign_person_rules(
            "residence",
            "residences",
            (Attribute.RESIDENCE_COUNTRY, Attribute.PERMANENT_RESIDENCIES),
            residents,
            "foreign person resident in",
        )
    if scope.organisations:
        members = " || ".join(
            f"principal in {entity(ORGANISATION, org)}" for org in sorted(set(scope.organisations))
        )
        rules += [
            _Rule(
                "organisation",
                "match",
                f"({members})",
                (),
                f"member of a restricted organisation ({len(set(scope.organisations))} listed)",
            ),
            _Rule(
                "organisation",
                "unknown",
                _unknown(Attribute.ORGANISATION),
                (Attribute.ORGANISATION,),
                "organisation unknown, restricted organisations cannot be ruled out (fail closed)",
            ),
        ]
    if scope.organisation_countries:
        countries = frozenset(scope.organisation_countries)
        contains = f"principal.organisation_countries.containsAny({_set(countries)})"
        needs = (
            Attribute.ORGANISATION,
            Attribute.ORGANISATION_HEADQUARTERS,
            Attribute.ORGANISATION_PARENT,
        )
        rules += [
            _Rule(
                "organisation_country",
                "match",
                contains,
                (),
                f"organisation headquartered or ultimately owned in {_countries(countries)}",
            ),
            _Rule(
                "organisation_country",
                "unknown",
                f"{_unknown(*needs)} && !{contains}",
                needs,
                f"organisation's headquarters or parent country unknown, "
                f"{_countries(countries)} cannot be ruled out (fail closed)",
            ),
        ]
    if scope.verification_statuses:
        statuses = {s.value for s in scope.verification_statuses}
        rules += [
            _Rule(
                "verification",
                "match",
                f"{_known(Attribute.VERIFICATION)} && "
                f"{_set(statuses)}.contains(principal.verification_status)",
                (),
                f"identity verification {', '.join(sorted(statuses))} "
                "(an expired verification is unverified)",
            ),
            _Rule(
                "verification",
                "unknown",
                _unknown(Attribute.VERIFICATION),
                (Attribute.VERIFICATION,),
                "identity verification unknown (fail closed)",
            ),
        ]
    if scope.request_locations:
        locations = frozenset(scope.request_locations)
        known = f"!{_unknown(Attribute.REQUEST_LOCATION, on='context')}"
        rules += [
            _Rule(
                "request_location",
                "match",
                f"{known} && {_set(locations)}.contains(context.location_country)",
                (),
                f"request made from {_countries(locations)}",
            ),
            _Rule(
                "request_location",
                "unknown",
                _unknown(Attribute.REQUEST_LOCATION, on="context"),
                (Attribute.REQUEST_LOCATION,),
                "request location unknown (fail closed)",
            ),
        ]
    return rules


def _exemptions(scope: RestrictionScope) -> str | None:
    principals = sorted({e.id for e in scope.exemptions if e.kind is ExemptionKind.PRINCIPAL})
    organisations = sorted({e.id for e in scope.exemptions if e.kind is ExemptionKind.ORGANISATION})
    terms = [f"principal == {entity(PRINCIPAL, p)}" for p in principals]
    terms += [f"principal in {entity(ORGANISATION, o)}" for o in organisations]
    return " || ".join(terms) or None


def _order_label(order: RestrictionOrdered) -> str:
    who = "interim order" if order.interim else f"order by reviewer {order.reviewer_id}"
    window = f"effective {cedar_time(order.effective_at)}"
    if order.expires_at is not None:
        window += f" until {cedar_time(order.expires_at, round_up=True)}"
    return f"Restriction order {order.order_id} ({who}, {window})"


def compile_order(
    order: RestrictionOrdered, groups: CountryGroups, *, fail_closed: bool = False
) -> list[str] | Refusal:
    """The Cedar forbids of one order (text, one string per policy)."""
    rules = _rules(order.scope, groups, fail_closed=fail_closed)
    if isinstance(rules, Refusal):
        return rules
    return _forbids(order, rules)


def _forbids(order: RestrictionOrdered, rules: list[_Rule]) -> list[str]:
    effective = cedar_time(order.effective_at)
    expires = cedar_time(order.expires_at, round_up=True) if order.expires_at else None
    window = f'context.now >= datetime("{effective}")'
    if expires is not None:
        window += f' && context.now < datetime("{expires}")'
    exempt = _exemptions(order.scope)
    label = _order_label(order)
    resource = entity(MODEL, order.model_id)
    policies = []
    for rule in rules:
        notes = {
            cedar.ID: f"order:{order.order_id}:{rule.criterion}:{rule.kind}",
            cedar.ORDER_ID: str(order.order_id),
            cedar.CRITERION: rule.criterion,
            cedar.KIND: rule.kind,
            cedar.REASON: f"{label}: access to {order.model_id} denied: {rule.reason}",
            cedar.NEEDS: ",".join(a.value for a in rule.needs),
            cedar.EFFECTIVE_AT: effective,
            cedar.EXPIRES_AT: expires or "",
        }
        head = "".join(f"@{key}({cedar_string(value)})\n" for key, value in notes.items() if value)
        body = f"forbid (principal, action, resource == {resource})\nwhen {{ {window} }}\n"
        body += f"when {{ {rule.condition} }}\n"
        if exempt is not None:
            body += f"unless {{ {exempt} }}\n"
        policies.append(head + body.rstrip("\n") + ";\n")
    return policies


def baseline(model_id: str) -> str:
    notes = {
        cedar.ID: BASELINE_ID,
        cedar.KIND: "baseline",
        cedar.REASON: f"no restriction order denies this access to {model_id}",
    }
    head = "".join(f"@{key}({cedar_string(value)})\n" for key, value in notes.items())
    return head + f"permit (principal, action, resource == {entity(MODEL, model_id)});\n"


def lockdown_order(order: RestrictionOrdered, refusal: Refusal) -> list[str]:
    """The forbid for an order that cannot be compiled at all: everyone is denied the
    model within the order's window, naming the order and why (fail closed)."""
    rule = _Rule(
        LOCKDOWN,
        "unusable",
        "true",
        (),
        f"the order could not be compiled ({refusal.reason.value}: {refusal.detail}); "
        "everyone is denied until the agency publishes a corrected policy (fail closed)",
    )
    return _forbids(order, [rule])  # the order's own window and exemptions still apply


def compile_policy(
    model_id: str,
    orders: Sequence[RestrictionOrdered],
    groups: CountryGroups,
    *,
    fail_closed: bool = False,
) -> CompiledPolicy | Refusal:
    """The policy set of ``model_id`` enforcing ``orders`` (the orders not ended).

    Without ``fail_closed`` (previews, the ``compile`` command) an order that cannot
    be compiled as written is refused. With it (the service publishing a version),
    nothing an order forbids is ever dropped: an unknown country group denies every
    foreign person, and an order that still cannot be compiled denies everyone the
    model in its window; ``problems`` says what happened, for the operator's alert.
    """
    ordered = sorted(orders, key=lambda o: (o.effective_at, str(o.order_id)))
    if len({o.order_id for o in ordered}) != len(ordered):
        return Refusal(RejectionReason.CONFLICT, "an order is listed twice")
    for order in ordered:
        if order.model_id != model_id:
            return Refusal(
                RejectionReason.CONFLICT,
                f"order {order.order_id} restricts {order.model_id}, not {model_id}",
            )
    problems: list[str] = []
    bodies: list[str] = []
    for order in ordered:
        compiled = compile_order(order, groups, fail_closed=fail_closed)
        if fail_closed and isinstance(compiled, list):
            named = [*order.scope.country_groups, *(t.value for t in order.scope.country_tiers)]
            unknown = sorted({n for n in named if n not in groups.groups})
            if unknown:
                problems.append(f"order {order.order_id}: {_unknown_groups(unknown, groups)}")
        if isinstance(compiled, Refusal):
            if not fail_closed:
                return compiled
            problems.append(f"order {order.order_id}: {compiled}")
            compiled = lockdown_order(order, compiled)
        bodies += compiled
    result = _checked(model_id, ordered, groups, bodies, problems)
    if isinstance(result, Refusal) and fail_closed:
        # The text as a whole is unusable (a compiler defect): lock the model down.
        locked = [text for order in ordered for text in lockdown_order(order, result)]
        return _checked(model_id, ordered, groups, locked, [*problems, str(result)])
    return result


def _checked(
    model_id: str,
    ordered: Sequence[RestrictionOrdered],
    groups: CountryGroups,
    bodies: list[str],
    problems: list[str],
) -> CompiledPolicy | Refusal:
    """The assembled text, parsed back by the enforcers' own code before it is returned."""
    parts = [
        f"// Access policy for {model_id}: {len(ordered)} restriction order(s); "
        f"schema {cedar.SCHEMA_VERSION}, country groups {groups.version}.\n",
        baseline(model_id),
        *bodies,
    ]
    text = "\n".join(parts)
    content_hash = policy_hash(text)
    try:
        loaded = LoadedPolicy.parse(model_id, 1, text, content_hash)
    except UnusablePolicy as exc:
        return Refusal(RejectionReason.INVALID_POLICY, f"compiled policy is unusable: {exc}")
    expected = {o.order_id for o in ordered}
    if loaded.order_ids != expected:
        return Refusal(RejectionReason.INVALID_POLICY, "compiled policy lost an order")
    return CompiledPolicy(
        model_id=model_id,
        cedar_policies=text,
        content_hash=content_hash,
        orders=tuple(
            EnforcedOrder(
                order_id=o.order_id,
                effective_at=o.effective_at,
                expires_at=o.expires_at,
                nationality_rule=o.scope.nationality_rule,
                interim=o.interim,
            )
            for o in ordered
        ),
        schema_version=cedar.SCHEMA_VERSION,
        country_groups_version=groups.version,
        problems=tuple(problems),
    )
