"""The Kafka ACLs that follow from the registry: least privilege, as data.

``grants_for(principal)`` is every ACL binding (all ALLOW, any host) one
principal needs, derived from ``TOPICS`` (writers, readers), ``FEEDS`` and
the naming rules of consumers and relays. Nothing else is allowed: the broker
runs with ``allow.everyone.if.no.acl.found=false``, so a binding missing here
is an authorization error, never a silent permission.

Per role:

- agency service (intake, evaluation, risk, access): WRITE on the topics it
  writes; READ on the topics it reads, with the consumer group
  ``<role>.<topic>`` and WRITE on ``<topic>.dlq``; its outbox relay's
  transactional id and checkpoint group ``outbox-relay.<database>.<schema>``
  and READ on the checkpoint topic (a transactional offset commit needs it).
  A service writes the feeds of every lab the registry names it a writer of;
  those bindings are part of each lab's grants (below), LITERAL per lab.
- lab ``L``: WRITE on ``lab.submissions`` and ``lab.compliance``; READ on the
  topics and consumer groups PREFIXED ``labs.L.``. It reads no agency topic.
- evaluator / reviewer ``T``: WRITE on its signed input topic; READ on its own
  answers feed (topics and groups PREFIXED ``evaluator.T.`` / ``reviewer.T.``).
- government subscriber ``G``: READ on ``gov.findings``, groups PREFIXED
  ``government.G.``.
- console (a read model): READ on the topics it reads and on every ``<topic>.dlq``,
  each with its consumer group ``console.<topic>``. Nothing else: no WRITE (not
  even a DLQ: it publishes nothing), no transactional id.
- test: ALL on topics, groups and transactional ids PREFIXED ``test.``.
- operator: none — a super user (``super.users``), for admin tooling only.

WRITE and READ imply DESCRIBE in Kafka, so DESCRIBE is never granted alone.

A test rig applies the same set to its own names with an ``AclScope``: a
``prefix`` in front of every topic, group and transactional id (LITERAL
bindings stay LITERAL on ``<prefix><name>``), and a ``principal_prefix`` in
front of every principal, so that the rig's users and bindings never mix with
the deployment's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from contracts.principals import (
    AGENCY_SERVICES,
    READ_MODELS,
    TEST_NAMESPACE,
    Principal,
    Role,
)
from contracts.registry import (
    DEAD_LETTER_TOPICS,
    OUTBOX_CHECKPOINT_TOPIC,
    TOPICS,
    consumer_group,
    feeds_of,
    relay_transactional_id,
)


class ResourceType(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class PatternType(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class Operation(StrEnum):
    ALL = "ALL"
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DELETE = "DELETE"
    ALTER = "ALTER"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"
    ALTER_CONFIGS = "ALTER_CONFIGS"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"
    CLUSTER_ACTION = "CLUSTER_ACTION"


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL binding: ``principal`` may ``operation`` on the resource."""

    principal: str  # "User:<name>"
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation
    permission: str = "ALLOW"  # read-back keeps DENY bindings visible (we never create one)
    host: str = "*"

    def __str__(self) -> str:
        match = "" if self.pattern is PatternType.LITERAL else " (prefix)"
        verdict = "" if self.permission == "ALLOW" else f" [{self.permission}]"
        return (
            f"{self.principal} {self.operation} {self.resource_type.lower()} "
            f"{self.name!r}{match}{verdict}"
        )


@dataclass(frozen=True)
class AclScope:
    """Where a set of grants applies: the deployment's names, or a test rig's."""

    prefix: str = ""  # in front of every topic, group and transactional id
    principal_prefix: str = ""  # in front of every principal name
    database: str = "frontier_review"  # the relays' transactional ids name it
    schemas: Mapping[Role, str] = field(default_factory=dict)  # outbox schema, default the role

    def user(self, principal: Principal) -> str:
        return f"User:{self.principal_prefix}{principal.name}"

    def schema(self, role: Role) -> str:
        return self.schemas.get(role, role.value)


def _grant(
    scope: AclScope,
    principal: Principal,
    resource_type: ResourceType,
    name: str,
    operation: Operation,
    pattern: PatternType = PatternType.LITERAL,
) -> Grant:
    return Grant(scope.user(principal), resource_type, scope.prefix + name, pattern, operation)


def _agency_grants(role: Role, scope: AclScope) -> set[Grant]:
    me = Principal(role)
    grants: set[Grant] = set()
    for topic in TOPICS:
        if role in topic.writers:
            grants.add(_grant(scope, me, ResourceType.TOPIC, topic.name, Operation.WRITE))
        if role in topic.readers:
            grants |= {
                _grant(scope, me, ResourceType.TOPIC, topic.name, Operation.READ),
                _grant(scope, me, ResourceType.TOPIC, topic.dlq, Operation.WRITE),
                _grant(
                    scope, me, ResourceType.GROUP, consumer_group(role, topic.name), Operation.READ
                ),
            }
    relay = relay_transactional_id(scope.database, scope.schema(role))
    grants |= {
        _grant(scope, me, ResourceType.TRANSACTIONAL_ID, relay, Operation.WRITE),
        _grant(scope, me, ResourceType.GROUP, relay, Operation.READ),
        _grant(scope, me, ResourceType.TOPIC, OUTBOX_CHECKPOINT_TOPIC, Operation.READ),
    }
    return grants


def _read_model_grants(role: Role, scope: AclScope) -> set[Grant]:
    """READ on what the registry says ``role`` reads (dead-letter topics included), in
    its own consumer groups; a read model writes nothing."""
    me = Principal(role)
    grants: set[Grant] = set()
    for topic in (*TOPICS, *DEAD_LETTER_TOPICS):
        if role in topic.readers:
            grants |= {
                _grant(scope, me, ResourceType.TOPIC, topic.name, Operation.READ),
                _grant(
                    scope, me, ResourceType.GROUP, consumer_group(role, topic.name), Operation.READ
                ),
            }
    return grants


def _tenant_grants(tenant: Principal, scope: AclScope) -> set[Grant]:
    """What a tenant's own principal may do, plus the agency's side of its feeds."""
    assert tenant.tenant is not None
    grants: set[Grant] = set()
    for topic in TOPICS:
        if tenant.role in topic.writers:
            grants.add(_grant(scope, tenant, ResourceType.TOPIC, topic.name, Operation.WRITE))
        if tenant.role in topic.readers:
            grants.add(_grant(scope, tenant, ResourceType.TOPIC, topic.name, Operation.READ))
    namespace = tenant.namespace()
    feeds = feeds_of(tenant.role)
    if namespace is not None:
        kinds = (ResourceType.TOPIC, ResourceType.GROUP) if feeds else (ResourceType.GROUP,)
        grants |= {
            _grant(scope, tenant, kind, namespace, Operation.READ, PatternType.PREFIXED)
            for kind in kinds
        }
    # The agency's side of the tenant's feeds: LITERAL per tenant, so that a service
    # can write exactly the feeds the registry names it a writer of.
    for feed in feeds:
        for writer in feed.writers:
            grants.add(
                _grant(
                    scope,
                    Principal(writer),
                    ResourceType.TOPIC,
                    feed.topic(tenant.tenant),
                    Operation.WRITE,
                )
            )
    return grants


def _test_grants(scope: AclScope) -> set[Grant]:
    me = Principal(Role.TEST)
    return {
        _grant(scope, me, kind, TEST_NAMESPACE, Operation.ALL, PatternType.PREFIXED)
        for kind in ResourceType
    }


def grants_for(principal: Principal, scope: AclScope | None = None) -> frozenset[Grant]:
    """Every ACL binding ``principal`` needs (for a lab, also the agency's
    bindings on that lab's feeds). The operator needs none: it is a super user."""
    scope = scope or AclScope()
    if principal.role in AGENCY_SERVICES:
        return frozenset(_agency_grants(principal.role, scope))
    if principal.role in READ_MODELS:
        return frozenset(_read_model_grants(principal.role, scope))
    if principal.role is Role.TEST:
        return frozenset(_test_grants(scope))
    if principal.role is Role.OPERATOR:
        return frozenset()
    return frozenset(_tenant_grants(principal, scope))


def own_grants(principal: Principal, scope: AclScope | None = None) -> frozenset[Grant]:
    """The bindings on ``principal`` itself (without the agency's side of a lab's feeds)."""
    scope = scope or AclScope()
    user = scope.user(principal)
    return frozenset(g for g in grants_for(principal, scope) if g.principal == user)


def desired_grants(
    principals: Iterable[Principal], scope: AclScope | None = None
) -> frozenset[Grant]:
    """The whole ACL set for a deployment (or rig) with these principals."""
    scope = scope or AclScope()
    return frozenset(g for p in principals for g in grants_for(p, scope))
