"""Who connects to Kafka: roles, principals, tenant ids and the names tenants own.

A *principal* is one authenticated Kafka identity (a SCRAM user, ``User:<name>``).
Each agency service (intake, evaluation, risk, access) has one principal, shared
by its replicas, its workers and its outbox relay; so has the read-only console.
Each *tenant* — a lab, an external evaluator, a government subscriber, a
reviewer — has a principal of its own, named ``<role>.<tenant id>``. The
operator's admin tooling has the one super-user principal; the test harness has
``test``. What each role may do is data in ``contracts.registry`` (per topic) and
``contracts.acl`` (the Kafka ACL bindings derived from it).

Tenant ids are the part of a Kafka name an outsider chooses, so they are
restricted: ``[a-z0-9][a-z0-9-]{0,62}``. Kafka's PREFIXED ACLs match by plain
string prefix, and a lab's feeds are granted by the prefix ``labs.<lab id>.``:

- no dot (or underscore, which Kafka treats as colliding with a dot in metric
  names) in an id, so ``labs.acme.`` is never a prefix of another lab's names
  (``acme.x`` would otherwise fall under ``acme``'s grant);
- the ``labs.`` namespace holds nothing but lab feeds (agency topics use the
  singular ``lab.``), so no lab id, however chosen, reaches an agency topic
  (a lab named ``submissions`` owns ``labs.submissions.``, far from
  ``lab.submissions.dlq``).

Because the namespace and the separator make every tenant's names disjoint
by construction, no id needs to be reserved. (A test checks the namespace
roots against every registry topic.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a principal is for; the registry grants access per role."""

    INTAKE = "intake"
    EVALUATION = "evaluation"
    RISK = "risk"
    ACCESS = "access"
    CONSOLE = "console"  # the read-only console: reads the agency's topics and DLQs, writes none
    OPERATOR = "operator"  # the super user: admin tooling only (topics, ACLs, principals)
    LAB = "lab"
    EVALUATOR = "evaluator"
    GOVERNMENT = "government"
    REVIEWER = "reviewer"
    TEST = "test"  # the test harness: everything under the test namespace, nothing else


AGENCY_SERVICES: tuple[Role, ...] = (Role.INTAKE, Role.EVALUATION, Role.RISK, Role.ACCESS)
"""Roles with a transactional outbox relay and consumer groups of their own."""

TENANT_ROLES: tuple[Role, ...] = (Role.LAB, Role.EVALUATOR, Role.GOVERNMENT, Role.REVIEWER)
"""Roles with one principal per tenant (``<role>.<tenant id>``)."""

READ_MODELS: tuple[Role, ...] = (Role.CONSOLE,)
"""Agency roles that only read: consumer groups of their own, no outbox relay, no writes
(not even a dead letter: what they cannot apply stays in their own schema)."""

SINGLE_ROLES: tuple[Role, ...] = (*AGENCY_SERVICES, *READ_MODELS, Role.OPERATOR, Role.TEST)
"""Roles with exactly one principal, named like the role."""

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

TEST_NAMESPACE = "test."
"""Every topic, group and transactional id of a test run starts with this."""

LAB_NAMESPACE_ROOT = "labs"
GOVERNMENT_NAMESPACE_ROOT = "government"
EVALUATOR_NAMESPACE_ROOT = "evaluator"
REVIEWER_NAMESPACE_ROOT = "reviewer"

NAMESPACE_ROOTS: dict[Role, str] = {
    Role.LAB: LAB_NAMESPACE_ROOT,
    Role.GOVERNMENT: GOVERNMENT_NAMESPACE_ROOT,
    Role.EVALUATOR: EVALUATOR_NAMESPACE_ROOT,
    Role.REVIEWER: REVIEWER_NAMESPACE_ROOT,
}
"""Tenant roles that own names (feed topics, consumer groups): ``<root>.<id>.``.

The roots are chosen so that no root followed by a dot begins a registry topic:
``labs`` because the agency's lab input topics are ``lab.*``; ``evaluator`` and
``reviewer`` (singular) because their input topics are ``evaluators.findings`` and
``reviewers.decisions`` (an evaluator named ``findings`` would otherwise own
``evaluators.findings.`` and with it that topic's DLQ)."""


class InvalidTenantId(ValueError):
    """A lab, evaluator, subscriber or reviewer id that cannot name Kafka resources."""


def check_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` if it may name Kafka resources, else InvalidTenantId saying why."""
    if not TENANT_ID.fullmatch(tenant_id):
        raise InvalidTenantId(
            f"{tenant_id!r} is not a valid tenant id for Kafka: use 1-63 characters "
            "of a-z, 0-9 and '-', starting with a letter or digit (no '.' or '_', "
            "which would let one tenant's prefix cover another's names)"
        )
    return tenant_id


@dataclass(frozen=True, order=True)
class Principal:
    """A Kafka identity: a role, and for tenant roles the tenant's id."""

    role: Role
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.role in TENANT_ROLES:
            if self.tenant is None:
                raise InvalidTenantId(f"a {self.role} principal needs a tenant id")
            check_tenant_id(self.tenant)
        elif self.tenant is not None:
            raise InvalidTenantId(f"a {self.role} principal has no tenant id")

    @property
    def name(self) -> str:
        """The SCRAM user name: ``intake``, ``lab.acme``."""
        return self.role.value if self.tenant is None else f"{self.role}.{self.tenant}"

    def namespace(self) -> str | None:
        """The prefix of the names this tenant owns (``labs.acme.``), if it owns any."""
        root = NAMESPACE_ROOTS.get(self.role)
        return None if root is None or self.tenant is None else f"{root}.{self.tenant}."

    def __str__(self) -> str:
        return self.name


def lab(lab_id: str) -> Principal:
    return Principal(Role.LAB, lab_id)


def tenant_namespace(role: Role, tenant_id: str) -> str:
    """``<root>.<tenant id>.``: the prefix of every name a tenant of ``role`` owns."""
    return f"{NAMESPACE_ROOTS[role]}.{check_tenant_id(tenant_id)}."


def parse_principal(name: str) -> Principal | None:
    """The principal a SCRAM user name stands for, or None if it is none of ours."""
    role_name, dot, tenant = name.partition(".")
    try:
        role = Role(role_name)
    except ValueError:
        return None
    try:
        return Principal(role, tenant if dot else None)
    except InvalidTenantId:
        return None
