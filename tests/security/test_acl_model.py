"""The ACL data derived from the registry: who may do what, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.acl import (
    AclScope,
    Grant,
    Operation,
    PatternType,
    ResourceType,
    desired_grants,
    grants_for,
    own_grants,
)
from contracts.principals import (
    AGENCY_SERVICES,
    NAMESPACE_ROOTS,
    TENANT_ID,
    InvalidTenantId,
    Principal,
    Role,
    check_tenant_id,
    lab,
    parse_principal,
)
from contracts.registry import (
    DEAD_LETTER_TOPICS,
    LAB_FEEDS,
    OUTBOX_CHECKPOINT_TOPIC,
    TOPIC_BY_NAME,
    TOPICS,
    feeds_of,
)
from contracts.topic import lab_namespace
from services.runtime.relay import CHECKPOINT_TOPIC

INTERNAL = ("intake.events", "evaluation.events", "risk.events", "access.events")
EVERYONE = [
    *(Principal(role) for role in AGENCY_SERVICES),
    Principal(Role.CONSOLE),
    Principal(Role.TEST),
    lab("acme"),
    lab("beta"),
    Principal(Role.EVALUATOR, "aisi"),
    Principal(Role.GOVERNMENT, "cisa"),
    Principal(Role.REVIEWER, "r1"),
]
ALL_GRANTS = desired_grants(EVERYONE)


def who_may(operation: Operation, topic: str) -> set[str]:
    return {
        g.principal
        for g in ALL_GRANTS
        if g.resource_type is ResourceType.TOPIC
        and g.operation in (operation, Operation.ALL)
        and (g.name == topic if g.pattern is PatternType.LITERAL else topic.startswith(g.name))
    }


@pytest.mark.parametrize("topic", [t.name for t in TOPICS])
def test_only_the_registered_writers_may_write_a_topic(topic: str) -> None:
    writers = TOPIC_BY_NAME[topic].writers
    expected = {f"User:{p.name}" for p in EVERYONE if p.role in writers}
    assert who_may(Operation.WRITE, topic) == expected


@pytest.mark.parametrize("topic", [t.name for t in TOPICS])
def test_only_the_registered_readers_may_read_a_topic(topic: str) -> None:
    readers = TOPIC_BY_NAME[topic].readers
    expected = {f"User:{p.name}" for p in EVERYONE if p.role in readers}
    assert who_may(Operation.READ, topic) == expected


def test_intake_alone_writes_intake_events() -> None:
    assert who_may(Operation.WRITE, "intake.events") == {"User:intake"}


@pytest.mark.parametrize("topic", INTERNAL)
def test_no_tenant_may_read_or_write_an_internal_topic(topic: str) -> None:
    tenants = {f"User:{p.name}" for p in EVERYONE if p.tenant is not None}
    assert not (who_may(Operation.READ, topic) | who_may(Operation.WRITE, topic)) & tenants


def test_a_lab_writes_only_its_signed_input_topics_and_reads_only_its_namespace() -> None:
    assert own_grants(lab("acme")) == {
        Grant(
            "User:lab.acme",
            ResourceType.TOPIC,
            "lab.submissions",
            PatternType.LITERAL,
            Operation.WRITE,
        ),
        Grant(
            "User:lab.acme",
            ResourceType.TOPIC,
            "lab.compliance",
            PatternType.LITERAL,
            Operation.WRITE,
        ),
        Grant(
            "User:lab.acme", ResourceType.TOPIC, "labs.acme.", PatternType.PREFIXED, Operation.READ
        ),
        Grant(
            "User:lab.acme", ResourceType.GROUP, "labs.acme.", PatternType.PREFIXED, Operation.READ
        ),
    }


def test_a_lab_feed_is_written_by_the_agency_roles_the_registry_names() -> None:
    answers, policies = (feed.topic("acme") for feed in LAB_FEEDS)
    assert who_may(Operation.WRITE, answers) == {"User:intake", "User:risk", "User:access"}
    assert who_may(Operation.WRITE, policies) == {"User:access"}
    assert (
        who_may(Operation.READ, answers) == who_may(Operation.READ, policies) == {"User:lab.acme"}
    )


def test_government_subscribers_read_the_findings_feed_and_the_audit_log_only() -> None:
    grants = own_grants(Principal(Role.GOVERNMENT, "cisa"))
    topics = {(g.name, g.operation) for g in grants if g.resource_type is ResourceType.TOPIC}
    assert topics == {("gov.findings", Operation.READ), ("gov.audit", Operation.READ)}


@pytest.mark.parametrize(
    ("role", "input_topic", "writer"),
    [
        (Role.EVALUATOR, "evaluators.findings", "User:evaluation"),
        (Role.REVIEWER, "reviewers.decisions", "User:risk"),
    ],
)
def test_evaluators_and_reviewers_write_their_input_and_read_only_their_answers(
    role: Role, input_topic: str, writer: str
) -> None:
    me = Principal(role, "aisi")
    user = f"User:{me.name}"
    assert own_grants(me) == {
        Grant(user, ResourceType.TOPIC, input_topic, PatternType.LITERAL, Operation.WRITE),
        Grant(user, ResourceType.TOPIC, f"{role}.aisi.", PatternType.PREFIXED, Operation.READ),
        Grant(user, ResourceType.GROUP, f"{role}.aisi.", PatternType.PREFIXED, Operation.READ),
    }
    (answers,) = (feed.topic("aisi") for feed in feeds_of(role))
    assert answers == f"{role}.aisi.answers"
    everyone = desired_grants([*EVERYONE, me])
    writers = {
        g.principal for g in everyone if g.operation is Operation.WRITE and g.name == answers
    }
    assert writers == {writer}


def test_reviewers_write_their_decisions_topic_which_risk_reads() -> None:
    assert who_may(Operation.WRITE, "reviewers.decisions") == {"User:reviewer.r1"}
    assert who_may(Operation.READ, "reviewers.decisions") == {"User:risk"}


def test_every_agency_reader_may_dead_letter_what_it_reads() -> None:
    for topic in TOPICS:
        for role in topic.readers:
            if role in AGENCY_SERVICES:
                assert f"User:{role}" in who_may(Operation.WRITE, topic.dlq)


def test_only_the_console_may_read_a_dead_letter_topic() -> None:
    for topic in DEAD_LETTER_TOPICS:
        expected = {"User:console"} if topic.writers else set()
        assert who_may(Operation.READ, topic.name) == expected, topic.name


def test_the_dead_letters_of_a_topic_are_written_by_its_agency_readers() -> None:
    for topic in DEAD_LETTER_TOPICS:
        writers = {f"User:{role}" for role in topic.writers}
        assert who_may(Operation.WRITE, topic.name) == writers, topic.name


def test_the_console_reads_every_topic_of_the_agencys_pipeline_and_every_dead_letter() -> None:
    read = {
        g.name
        for g in own_grants(Principal(Role.CONSOLE))
        if g.resource_type is ResourceType.TOPIC and g.operation is Operation.READ
    }
    pipeline = {*INTERNAL, "access.policies", "gov.audit"}
    consumed = {t.dlq for t in TOPICS if set(t.readers) & set(AGENCY_SERVICES)}
    assert read == pipeline | consumed


def test_the_console_only_reads_and_never_writes() -> None:
    grants = own_grants(Principal(Role.CONSOLE))
    assert {g.operation for g in grants} == {Operation.READ}
    assert not [g for g in grants if g.resource_type is ResourceType.TRANSACTIONAL_ID]
    assert all(g.pattern is PatternType.LITERAL for g in grants)


def test_the_console_consumes_in_consumer_groups_of_its_own() -> None:
    grants = own_grants(Principal(Role.CONSOLE))
    topics = {g.name for g in grants if g.resource_type is ResourceType.TOPIC}
    groups = {g.name for g in grants if g.resource_type is ResourceType.GROUP}
    assert groups == {f"console.{topic}" for topic in topics}


def test_no_tenant_reads_what_the_console_reads_but_the_audit_log_published_to_government() -> None:
    tenants = {f"User:{p.name}" for p in EVERYONE if p.tenant is not None}
    console = own_grants(Principal(Role.CONSOLE))
    for topic in {g.name for g in console if g.resource_type is ResourceType.TOPIC}:
        readers = who_may(Operation.READ, topic) & tenants
        assert readers == ({"User:government.cisa"} if topic == "gov.audit" else set()), topic


def test_each_relay_may_use_only_its_own_transactional_id() -> None:
    ids = {
        (g.principal, g.name)
        for g in ALL_GRANTS
        if g.resource_type is ResourceType.TRANSACTIONAL_ID and g.principal != "User:test"
    }
    assert ids == {
        (f"User:{role}", f"outbox-relay.frontier_review.{role}") for role in AGENCY_SERVICES
    }


def test_the_operator_needs_no_acl_because_it_is_the_super_user() -> None:
    assert grants_for(Principal(Role.OPERATOR)) == frozenset()


def test_the_test_harness_is_confined_to_the_test_namespace() -> None:
    grants = grants_for(Principal(Role.TEST))
    assert {(g.name, g.pattern) for g in grants} == {("test.", PatternType.PREFIXED)}


def test_a_scope_prefixes_every_name_and_principal_and_keeps_literal_bindings_literal() -> None:
    scope = AclScope(prefix="test.x.", principal_prefix="rig.")
    plain, scoped = grants_for(Principal(Role.INTAKE)), grants_for(Principal(Role.INTAKE), scope)
    assert {(f"User:rig.{g.principal[5:]}", "test.x." + g.name, g.pattern) for g in plain} == {
        (g.principal, g.name, g.pattern) for g in scoped
    }


def test_the_checkpoint_topic_in_the_registry_is_the_relays() -> None:
    assert OUTBOX_CHECKPOINT_TOPIC == CHECKPOINT_TOPIC


# --- tenant ids and the prefix-collision attack ------------------------------------


@pytest.mark.parametrize(
    "tenant_id",
    ["acme.x", "acme_x", "Acme", "", "-acme", "a" * 64, "acme/x", "acme x", "acme*", "../x"],
)
def test_a_tenant_id_that_could_reach_other_names_is_refused(tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        check_tenant_id(tenant_id)


@pytest.mark.parametrize("tenant_id", ["acme", "acme-x", "0day", "a" * 63, "submissions"])
def test_plain_tenant_ids_are_accepted(tenant_id: str) -> None:
    assert check_tenant_id(tenant_id) == tenant_id


def test_no_namespace_root_is_the_first_segment_of_a_registry_topic() -> None:
    names = [t.name for t in TOPICS] + [t.dlq for t in TOPICS] + [OUTBOX_CHECKPOINT_TOPIC]
    for root in NAMESPACE_ROOTS.values():
        assert not [name for name in names if name.startswith(f"{root}.") or name == root]


tenant_ids = st.from_regex(TENANT_ID, fullmatch=True)


@given(tenant_ids, tenant_ids)
def test_one_labs_namespace_never_covers_another_labs_names(mine: str, theirs: str) -> None:
    if mine == theirs:
        return
    for feed in LAB_FEEDS:
        assert not feed.topic(theirs).startswith(lab_namespace(mine))


@given(tenant_ids)
def test_a_labs_namespace_covers_no_registry_topic(lab_id: str) -> None:
    names = [t.name for t in TOPICS] + [t.dlq for t in TOPICS] + [OUTBOX_CHECKPOINT_TOPIC]
    assert not [name for name in names if name.startswith(lab_namespace(lab_id))]


@given(tenant_ids)
def test_a_lab_feed_is_a_valid_kafka_topic_name(lab_id: str) -> None:
    for feed in LAB_FEEDS:
        name = feed.topic(lab_id)
        assert len(name) <= 249 and all(c.isalnum() or c in "._-" for c in name)


@pytest.mark.parametrize(
    ("name", "principal"),
    [
        ("intake", Principal(Role.INTAKE)),
        ("lab.acme", lab("acme")),
        ("government.cisa", Principal(Role.GOVERNMENT, "cisa")),
        ("broker", None),
        ("lab", None),
        ("lab.acme.x", None),
        ("intake.x", None),
        ("rig-1.intake", None),
    ],
)
def test_user_names_map_to_principals_and_nothing_else(
    name: str, principal: Principal | None
) -> None:
    assert parse_principal(name) == principal
