-- The console's read model: what the agency's topics said, one table per kind of fact.
-- Each table has ONE writer, the consumer of one topic (named above it), and the rows of
-- one key come from one partition of that topic: no two transactions change a row at
-- once, and the consumers never wait on each other's locks. A page composes its view
-- from every table (services/console/projection.py compose). `doc` is the row's state
-- type (services/console/model.py) as JSON; the other columns are what queries filter on.
-- Applied into the service's own schema (search_path) by services/runtime/migrations.py.

-- intake.events: SubmissionAccepted / Rejected / Withdrawn, ReviewWindowClosed
CREATE TABLE intake_facts (
    submission_id uuid        PRIMARY KEY,
    lab_id        text,
    model_id      text,
    accepted_at   timestamptz,
    deadline      timestamptz,
    doc           jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX intake_facts_accepted ON intake_facts (accepted_at DESC NULLS LAST);
CREATE INDEX intake_facts_model ON intake_facts (model_id);

-- evaluation.events: EvaluationStarted / Completed / Failed (suites inside doc)
CREATE TABLE evaluation_facts (
    submission_id uuid        PRIMARY KEY,
    model_id      text,
    doc           jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- evaluation.events: FindingRecorded (the finding id is evaluation's deterministic id)
CREATE TABLE findings (
    finding_id    uuid PRIMARY KEY,
    submission_id uuid NOT NULL,
    suite_id      text NOT NULL,
    doc           jsonb NOT NULL
);
CREATE INDEX findings_submission ON findings (submission_id);

-- risk.events: the latest RiskAssessed, ReviewConcluded
CREATE TABLE risk_facts (
    submission_id uuid        PRIMARY KEY,
    model_id      text,
    overall_level text,
    doc           jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- risk.events: EscalationRaised / Decided / Overdue (tallies of signatures inside doc)
CREATE TABLE escalations (
    escalation_id uuid        PRIMARY KEY,
    submission_id uuid        NOT NULL,
    status        text        NOT NULL,
    decide_by     timestamptz,
    doc           jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX escalations_submission ON escalations (submission_id);
CREATE INDEX escalations_awaiting ON escalations (decide_by) WHERE status = 'awaiting_decision';

-- risk.events: RestrictionOrdered, RestrictionLiftOrdered
CREATE TABLE orders (
    order_id      uuid        PRIMARY KEY,
    submission_id uuid        NOT NULL,
    model_id      text,
    doc           jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX orders_submission ON orders (submission_id);

-- access.events: RestrictionLifted
CREATE TABLE lifts (
    order_id      uuid PRIMARY KEY,
    submission_id uuid NOT NULL,
    model_id      text NOT NULL,
    doc           jsonb NOT NULL
);

-- access.events: ComplianceOverdue
CREATE TABLE overdue (
    model_id text    NOT NULL,
    version  integer NOT NULL,
    doc      jsonb   NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- access.policies: AccessPolicyPublished (every version seen; the topic is compacted,
-- so a console started late knows each model's latest version only)
CREATE TABLE policies (
    model_id     text        NOT NULL,
    version      integer     NOT NULL,
    published_at timestamptz NOT NULL,
    doc          jsonb       NOT NULL,
    PRIMARY KEY (model_id, version)
);

-- gov.audit: AuditCheckpoint
CREATE TABLE checkpoints (
    log_id text   NOT NULL,
    size   bigint NOT NULL,
    doc    jsonb  NOT NULL,
    PRIMARY KEY (log_id, size)
);

-- <topic>.dlq, one consumer each: the dead letters as their headers describe them
CREATE TABLE dead_letters (
    dlq_topic     text    NOT NULL,
    "partition"   integer NOT NULL,
    "offset"      bigint  NOT NULL,
    origin_topic  text,
    reason        text    NOT NULL,
    submission_id uuid,
    model_id      text,
    failed_at     timestamptz,
    doc           jsonb   NOT NULL,
    PRIMARY KEY (dlq_topic, "partition", "offset")
);
CREATE INDEX dead_letters_submission ON dead_letters (submission_id);
CREATE INDEX dead_letters_model ON dead_letters (model_id);

-- every topic's consumer, its own events only: one line per event (PK per topic)
CREATE TABLE timeline (
    topic         text        NOT NULL,
    event_id      text        NOT NULL,
    submission_id uuid,
    model_id      text,
    at            timestamptz NOT NULL,
    doc           jsonb       NOT NULL,
    PRIMARY KEY (topic, event_id)
);
CREATE INDEX timeline_submission ON timeline (submission_id, at);
CREATE INDEX timeline_model ON timeline (model_id, at) WHERE submission_id IS NULL;

-- every rejection the agency answered (on intake, evaluation, risk and access events)
CREATE TABLE refusals (
    kind          text        NOT NULL,
    event_id      text        NOT NULL,
    reason        text        NOT NULL,
    submission_id uuid,
    model_id      text,
    at            timestamptz NOT NULL,
    doc           jsonb       NOT NULL,
    PRIMARY KEY (kind, event_id)
);
CREATE INDEX refusals_at ON refusals (at DESC);
