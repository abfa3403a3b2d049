"""The topics: who writes and reads them, what the record key is, which events travel on them.

One topic per producing context. The record key (= CloudEvent ``subject``) is
the submission id, or the model id on lab.compliance and the access topics, so
each submission's (model's) events stay in order on one partition. ``Topic.key``
names the data field that holds it; ``subject_for(data)`` reads it.

``writers`` and ``readers`` are the only roles whose principals may produce to
and consume from a topic; ``contracts.acl`` derives the broker's ACLs from
them, so this table *is* the access policy. Internal topics are the agency's
alone: labs write only their signed input topics and read only their own
feeds (``FEEDS``, ``labs.<lab id>.*``), because Kafka authorizes per topic,
not per record, and the internal topics carry every lab's pre-release data.
"""

from __future__ import annotations

from contracts.envelope import Event
from contracts.events import (
    AccessPolicyPublished,
    AuditCheckpoint,
    ComplianceAcknowledged,
    ComplianceOverdue,
    ComplianceRejected,
    EscalationDecided,
    EscalationOverdue,
    EscalationRaised,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    ExternalFindingRejected,
    ExternalFindingSubmitted,
    FindingRecorded,
    FindingShared,
    LabRegistryChanged,
    Rejection,
    RestrictionLifted,
    RestrictionLiftOrdered,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewerDecisionRejected,
    ReviewerDecisionSubmitted,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionFiled,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
    WithdrawalRequested,
)
from contracts.principals import AGENCY_SERVICES, NAMESPACE_ROOTS, Role
from contracts.topic import DAY_MS, TenantFeed, Topic

SUBMISSION_ID = "submission_id"
MODEL_ID = "model_id"
LOG_ID = "log_id"
LAB_ID = "lab_id"

# Input topics only need to outlive a consumer outage: their consumer persists
# what it accepts. Pipeline topics outlive a whole review window (30 days) with
# margin, so a rebuilt consumer can replay a submission's history. The feed and
# access events are kept for 90 days; access.policies and intake.registry are compacted,
# kept forever.
INPUT_RETENTION_MS = 14 * DAY_MS
PIPELINE_RETENTION_MS = 45 * DAY_MS
RECORD_RETENTION_MS = 90 * DAY_MS

TOPICS: tuple[Topic, ...] = (
    Topic(
        name="lab.submissions",
        producer="lab",
        key=SUBMISSION_ID,
        events=(SubmissionFiled, WithdrawalRequested),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed submissions and withdrawals from labs (write only: a lab "
        "cannot read it back). Consumer: intake.",
        writers=(Role.LAB,),
        readers=(Role.INTAKE,),
    ),
    Topic(
        name="lab.compliance",
        producer="lab",
        key=MODEL_ID,
        events=(ComplianceAcknowledged,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed acknowledgements that a lab enforces a policy (write only for "
        "labs). Consumer: access.",
        writers=(Role.LAB,),
        readers=(Role.ACCESS,),
    ),
    Topic(
        name="evaluators.findings",
        producer="evaluators",
        key=SUBMISSION_ID,
        events=(ExternalFindingSubmitted,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed manual findings from external evaluators (write only for "
        "them). Consumer: evaluation.",
        writers=(Role.EVALUATOR,),
        readers=(Role.EVALUATION,),
    ),
    Topic(
        name="reviewers.decisions",
        producer="reviewers",
        key=SUBMISSION_ID,
        events=(ReviewerDecisionSubmitted,),
        retention_ms=INPUT_RETENTION_MS,
        description="Signed decisions of the agency's reviewers on escalations (write only "
        "for them). Consumer: risk (answers on risk.events).",
        writers=(Role.REVIEWER,),
        readers=(Role.RISK,),
    ),
    Topic(
        name="intake.events",
        producer="intake",
        key=SUBMISSION_ID,
        events=(
            SubmissionAccepted,
            SubmissionRejected,
            SubmissionWithdrawn,
            WithdrawalRejected,
            ReviewWindowClosed,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Intake decisions and the review-window clock. Consumers: evaluation, "
        "risk, the console. Internal: each lab gets its own answers on labs.<lab id>.answers.",
        writers=(Role.INTAKE,),
        readers=(Role.EVALUATION, Role.RISK, Role.CONSOLE),
    ),
    Topic(
        name="intake.registry",
        producer="intake",
        key=LAB_ID,
        events=(LabRegistryChanged,),
        partitions=3,
        compacted=True,
        description="The lab registry intake owns: each lab's whole entry (status, every "
        "public key with its validity and revocation; no secrets) after every change of it, "
        "compacted, kept forever, so a reader that replays it from the start rebuilds the "
        "registry. Consumer: access (verifies the labs' compliance acknowledgements with it).",
        writers=(Role.INTAKE,),
        readers=(Role.ACCESS,),
    ),
    Topic(
        name="evaluation.events",
        producer="evaluation",
        key=SUBMISSION_ID,
        events=(
            EvaluationStarted,
            FindingRecorded,
            EvaluationCompleted,
            EvaluationFailed,
            ExternalFindingRejected,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Evaluation progress and findings. Consumers: risk, the console. "
        "Internal: external evaluators cannot read it.",
        writers=(Role.EVALUATION,),
        readers=(Role.RISK, Role.CONSOLE),
    ),
    Topic(
        name="risk.events",
        producer="risk",
        key=SUBMISSION_ID,
        events=(
            RiskAssessed,
            EscalationRaised,
            EscalationDecided,
            RestrictionOrdered,
            RestrictionLiftOrdered,
            ReviewerDecisionRejected,
            EscalationOverdue,
            ReviewConcluded,
        ),
        retention_ms=PIPELINE_RETENTION_MS,
        description="Assessments, escalations, reviewer decisions and orders. Consumers: "
        "access, the console.",
        writers=(Role.RISK,),
        readers=(Role.ACCESS, Role.CONSOLE),
    ),
    Topic(
        name="gov.findings",
        producer="risk",
        key=SUBMISSION_ID,
        events=(FindingShared,),
        retention_ms=RECORD_RETENTION_MS,
        description="Redacted findings feed. Consumers: other government systems (each "
        "subscriber its own principal; the only topic they can read).",
        writers=(Role.RISK,),
        readers=(Role.GOVERNMENT,),
    ),
    Topic(
        name="gov.audit",
        producer="risk",
        key=LOG_ID,
        events=(AuditCheckpoint,),
        partitions=1,
        retention_ms=-1,
        description="Signed checkpoints of the risk service's hash-chained audit log, one "
        "ordered partition kept forever. Consumers: other government systems, auditors, "
        "the console.",
        writers=(Role.RISK,),
        readers=(Role.GOVERNMENT, Role.CONSOLE),
    ),
    Topic(
        name="access.events",
        producer="access",
        key=MODEL_ID,
        events=(RestrictionLifted, ComplianceOverdue, ComplianceRejected),
        retention_ms=RECORD_RETENTION_MS,
        description="Restriction lifecycle and compliance. Consumers: risk, the console. "
        "Internal: labs get their compliance answers on labs.<lab id>.answers.",
        writers=(Role.ACCESS,),
        readers=(Role.RISK, Role.CONSOLE),
    ),
    Topic(
        name="access.policies",
        producer="access",
        key=MODEL_ID,
        events=(AccessPolicyPublished,),
        partitions=3,
        compacted=True,
        description="Current Cedar policy per model, every lab's (compacted): the agency's "
        "record, read by the console. Enforcement points read their lab's "
        "labs.<lab id>.policies.",
        writers=(Role.ACCESS,),
        readers=(Role.CONSOLE,),
    ),
)

FEEDS: tuple[TenantFeed, ...] = (
    TenantFeed(
        owner=Role.LAB,
        suffix="answers",
        key="submission_id (submission answers), model_id (compliance answers)",
        writers=(Role.INTAKE, Role.RISK, Role.ACCESS),
        events=(
            SubmissionAccepted,
            SubmissionRejected,
            SubmissionWithdrawn,
            WithdrawalRejected,
            ReviewWindowClosed,
            ReviewConcluded,
            ComplianceRejected,
        ),
        description="Everything the agency answers one lab: accepted / rejected / withdrawn "
        "/ window closed (intake), the review's conclusion (risk), compliance answers "
        "(access), with agency-internal fields redacted. Readable by that lab only.",
    ),
    TenantFeed(
        owner=Role.LAB,
        suffix="policies",
        key=MODEL_ID,
        writers=(Role.ACCESS,),
        events=(AccessPolicyPublished,),
        partitions=1,
        compacted=True,
        description="The current access policy of each of the lab's models (compacted, "
        "kept forever): an enforcement point rebuilds its state by reading from the start.",
    ),
    TenantFeed(
        owner=Role.EVALUATOR,
        suffix="answers",
        key="submission_id, or the refused input's event id",
        writers=(Role.EVALUATION,),
        events=(FindingRecorded, ExternalFindingRejected),
        description="What evaluation answers one external evaluator: its finding recorded, "
        "or refused and why. Readable by that evaluator only.",
    ),
    TenantFeed(
        owner=Role.REVIEWER,
        suffix="answers",
        key="submission_id, or the refused input's event id",
        writers=(Role.RISK,),
        events=(EscalationDecided, ReviewerDecisionRejected),
        description="What risk answers one reviewer: its signed decision accepted (and "
        "whether it completed the quorum), or refused and why. Readable by that reviewer only.",
    ),
)


def _dead_letters(topic: Topic) -> Topic:
    writers = tuple(role for role in topic.readers if role in AGENCY_SERVICES)
    return Topic(
        name=topic.dlq,
        producer="runtime",
        key=topic.key,
        events=topic.events,
        partitions=1,
        description=f"Records of {topic.name} a consumer could not apply, byte for byte, "
        "with why and where from in the dlq.* headers (services/runtime/deadletter.py). "
        "Written by the topic's agency readers; read by the console.",
        writers=writers,
        readers=(Role.CONSOLE,) if writers else (),  # no agency reader: never written
    )


DEAD_LETTER_TOPICS: tuple[Topic, ...] = tuple(_dead_letters(topic) for topic in TOPICS)
"""``<topic>.dlq`` of every registry topic, as topics a reader can consume: the events of
the original topic may be in them, or any bytes at all (what failed to decode)."""
DEAD_LETTER_BY_NAME: dict[str, Topic] = {topic.name: topic for topic in DEAD_LETTER_TOPICS}

LAB_FEEDS: tuple[TenantFeed, ...] = tuple(f for f in FEEDS if f.owner is Role.LAB)
LAB_FEED_BY_SUFFIX: dict[str, TenantFeed] = {feed.suffix: feed for feed in LAB_FEEDS}
_FEED_BY_EVENT: dict[type[Event], TenantFeed] = {
    event: feed for feed in FEEDS for event in feed.events
}


def feeds_of(role: Role) -> tuple[TenantFeed, ...]:
    """The feeds every tenant of ``role`` has (none for a role without any)."""
    return tuple(feed for feed in FEEDS if feed.owner is role)


def is_feed_topic(name: str) -> bool:
    """Whether ``name`` is some tenant's feed (``labs.acme.answers``): a topic that exists
    only once its tenant was provisioned, unlike the registry's topics."""
    root, _, rest = name.partition(".")
    tenant, _, suffix = rest.partition(".")
    return bool(tenant) and any(
        feed.suffix == suffix and NAMESPACE_ROOTS[feed.owner] == root for feed in FEEDS
    )


def feed_for(event_type: type[Event]) -> TenantFeed:
    """The one tenant feed an event type's owner copy travels on (KeyError if none)."""
    try:
        return _FEED_BY_EVENT[event_type]
    except KeyError:
        raise KeyError(f"{event_type.__name__} is on no tenant feed") from None


# The outbox relay of every agency service commits its checkpoint (the batch
# number) as the offset of this topic's partition 0 for the group named like
# its transactional id (services/runtime/relay.py).
OUTBOX_CHECKPOINT_TOPIC = "frontier-review.outbox-checkpoints"


def relay_transactional_id(database: str, schema: str) -> str:
    """The transactional id, and checkpoint group, of a service's outbox relay."""
    return f"outbox-relay.{database}.{schema}"


def consumer_group(role: Role | str, topic: str) -> str:
    """The consumer group of a service consuming ``topic``."""
    return f"{role}.{topic}"


TOPIC_BY_NAME: dict[str, Topic] = {topic.name: topic for topic in TOPICS}

EVENTS: tuple[type[Event], ...] = tuple(event for topic in TOPICS for event in topic.events)
EVENT_BY_TYPE: dict[str, type[Event]] = {event.TYPE: event for event in EVENTS}

_TOPIC_BY_EVENT: dict[type[Event], Topic] = {
    event: topic for topic in TOPICS for event in topic.events
}


def topic_for(event_type: type[Event]) -> Topic:
    """The one topic an event type travels on (KeyError for an unregistered type)."""
    try:
        return _TOPIC_BY_EVENT[event_type]
    except KeyError:
        raise KeyError(f"{event_type.__name__} is on no topic of contracts.registry") from None


def subject_for(data: Event) -> str:
    """The record key / CloudEvent subject of ``data``: its topic's key field.

    A rejection whose input was too broken to name the submission (model) is
    keyed by the refused input's CloudEvent id instead.
    """
    topic = topic_for(type(data))
    value = getattr(data, topic.key, None)
    if value is None and isinstance(data, Rejection):
        value = data.rejected_event_id
    if value is None:
        raise ValueError(f"{type(data).__name__} has no {topic.key} to key it by")
    return str(value)
