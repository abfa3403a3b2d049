-- Risk: the submissions under review and their evaluation status, findings, assessments
-- (with the policy version each used), escalations with the reviewers' votes, orders,
-- conclusions, and the append-only, hash-chained audit log with its checkpoints.
-- Applied into the service's own schema (search_path) by services/runtime/migrations.py.

-- Thresholds policy versions the service has run with: a version names one content
-- forever (the service refuses a file whose sha256 changed under a known version).
CREATE TABLE policy_versions (
    version       text        PRIMARY KEY,
    sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    first_used_at timestamptz NOT NULL,
    content       text        NOT NULL  -- the file as loaded, to explain old assessments
);

-- One row per accepted submission (from SubmissionAccepted): who filed it, its window,
-- and how the review ended. The row is the lock that serialises a submission's writers.
CREATE TABLE reviews (
    submission_id    uuid        PRIMARY KEY,
    lab_id           text        NOT NULL,
    model_id         text        NOT NULL,
    window_deadline  timestamptz NOT NULL,
    window_closed_at timestamptz,
    withdrawn_at     timestamptz,
    evaluation_ended text,        -- EvaluationCompleted.ended_by, once reported
    concluded_at     timestamptz,
    outcome          text CHECK (outcome IN ('cleared', 'restrictions_ordered', 'pending_review'))
);

-- How each planned suite ended (EvaluationStarted / EvaluationFailed / EvaluationCompleted).
CREATE TABLE suite_runs (
    submission_id uuid NOT NULL REFERENCES reviews,
    suite_id      text NOT NULL,
    suite_version text NOT NULL,
    domain        text NOT NULL CHECK (domain IN ('cyber', 'bio', 'chem', 'nuclear', 'autonomy')),
    status        text CHECK (status IN ('completed', 'failed', 'incomplete', 'cancelled')),
    PRIMARY KEY (submission_id, suite_id, suite_version)
);

-- Findings as received. The finding id is the evaluation service's deterministic id: a
-- redelivery hits the primary key (ON CONFLICT DO NOTHING) and changes nothing.
CREATE TABLE findings (
    finding_id    uuid        PRIMARY KEY,
    submission_id uuid        NOT NULL REFERENCES reviews,
    domain        text        NOT NULL,
    body          jsonb       NOT NULL,  -- the FindingRecorded data
    body_sha256   text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL
);
CREATE INDEX findings_submission ON findings (submission_id);

-- Every published RiskAssessed: the submission's assessments are 1, 2, 3 ...; the last
-- is the one compared for "did the result change".
CREATE TABLE assessments (
    assessment_id       uuid        PRIMARY KEY,
    submission_id       uuid        NOT NULL REFERENCES reviews,
    sequence            integer     NOT NULL CHECK (sequence >= 1),
    policy_version      text        NOT NULL REFERENCES policy_versions,
    overall_level       text        NOT NULL CHECK (overall_level IN ('low', 'moderate', 'high', 'critical')),
    escalation_required boolean     NOT NULL,
    evaluation_incomplete boolean   NOT NULL,
    result_sha256       text        NOT NULL,
    body                jsonb       NOT NULL,  -- the RiskAssessed data
    assessed_at         timestamptz NOT NULL,
    UNIQUE (submission_id, sequence)
);
CREATE INDEX assessments_policy ON assessments (policy_version);

CREATE TABLE escalations (
    escalation_id      uuid        PRIMARY KEY,
    submission_id      uuid        NOT NULL REFERENCES reviews,
    assessment_id      uuid        NOT NULL REFERENCES assessments,
    level              text        NOT NULL CHECK (level IN ('moderate', 'high', 'critical')),
    domains            text[]      NOT NULL,
    finding_ids        uuid[]      NOT NULL,
    policy_version     text        NOT NULL REFERENCES policy_versions,
    reviewers_required integer     NOT NULL CHECK (reviewers_required BETWEEN 1 AND 20),
    raised_at          timestamptz NOT NULL,
    decide_by          timestamptz NOT NULL,
    status             text        NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'restricted', 'dismissed', 'monitoring', 'superseded')),
    interim_order_id   uuid,
    interim_lifted_at  timestamptz,
    order_id           uuid,        -- the final order (restricted)
    decided_at         timestamptz,
    superseded_by      uuid REFERENCES escalations DEFERRABLE INITIALLY DEFERRED,
    reminded_at        timestamptz, -- the one EscalationOverdue
    CHECK ((status = 'superseded') = (superseded_by IS NOT NULL)),
    CHECK ((status = 'restricted') = (order_id IS NOT NULL))
);
-- At most one open escalation per submission.
CREATE UNIQUE INDEX escalations_one_open ON escalations (submission_id) WHERE status = 'open';

-- The reviewers' accepted, signed decisions (votes). The decision id is the reviewer's
-- idempotency key; a reviewer signs each question of an escalation once.
CREATE TABLE decisions (
    decision_id    uuid        PRIMARY KEY,
    escalation_id  uuid        NOT NULL REFERENCES escalations,
    reviewer_id    text        NOT NULL,
    question       text        NOT NULL CHECK (question IN ('outcome', 'interim')),
    decision       text        NOT NULL
        CHECK (decision IN ('restrict', 'no_restriction', 'monitor', 'lift_interim')),
    order_sha256   text CHECK (order_sha256 ~ '^[0-9a-f]{64}$'),
    order_spec     jsonb,
    interim_order_id uuid,
    justification  text        NOT NULL,
    body_sha256    text        NOT NULL,
    key_id         text        NOT NULL,
    signed_data    jsonb       NOT NULL,  -- the ReviewerDecisionSubmitted data as received
    event_id       text        NOT NULL,
    accepted_at    timestamptz NOT NULL,
    UNIQUE (escalation_id, reviewer_id, question),
    CHECK ((decision = 'restrict') = (order_sha256 IS NOT NULL AND order_spec IS NOT NULL))
);

-- Orders risk issued (interim and final), and what became of them.
CREATE TABLE orders (
    order_id            uuid        PRIMARY KEY,
    escalation_id       uuid        NOT NULL REFERENCES escalations,
    submission_id       uuid        NOT NULL REFERENCES reviews,
    interim             boolean     NOT NULL,
    order_sha256        text,
    scope               jsonb       NOT NULL,
    body                jsonb       NOT NULL,  -- the RestrictionOrdered data
    ordered_at          timestamptz NOT NULL,
    effective_at        timestamptz NOT NULL,
    expires_at          timestamptz,
    compliance_deadline timestamptz,
    superseded_by       uuid REFERENCES orders,
    lifted_at           timestamptz,  -- RestrictionLifted (access.events)
    CHECK (expires_at IS NULL OR expires_at > effective_at)
);
CREATE INDEX orders_submission ON orders (submission_id);

-- The one conclusion per submission: the primary key makes a second impossible.
CREATE TABLE conclusions (
    submission_id uuid        PRIMARY KEY REFERENCES reviews,
    outcome       text        NOT NULL
        CHECK (outcome IN ('cleared', 'restrictions_ordered', 'pending_review')),
    body          jsonb       NOT NULL,  -- the ReviewConcluded data
    concluded_at  timestamptz NOT NULL
);

-- Findings shared on gov.findings, once per (finding, policy version, level).
CREATE TABLE shared_findings (
    finding_id     uuid        NOT NULL REFERENCES findings,
    policy_version text        NOT NULL,
    level          text        NOT NULL,
    event_id       text        NOT NULL UNIQUE,
    shared_at      timestamptz NOT NULL,
    PRIMARY KEY (finding_id, policy_version, level)
);

-- The audit log: append-only and hash-chained (services/risk/audit.py). `content` is the
-- RFC 8785 text exactly as hashed (jsonb would reorder keys and reformat numbers; the
-- generated column is for queries only).
CREATE TABLE audit_log (
    sequence        bigint      PRIMARY KEY CHECK (sequence >= 1),
    kind            text        NOT NULL,
    subject         text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    content         text        NOT NULL,
    content_json    jsonb       GENERATED ALWAYS AS (content::jsonb) STORED,
    previous_sha256 text        NOT NULL CHECK (previous_sha256 ~ '^[0-9a-f]{64}$'),
    entry_sha256    text        NOT NULL UNIQUE CHECK (entry_sha256 ~ '^[0-9a-f]{64}$'),
    key_id          text        NOT NULL,
    signature       text        NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject);

-- The chain head, one row: appenders lock it FOR UPDATE, so entries get consecutive
-- sequence numbers in commit order and the chain never forks.
CREATE TABLE audit_head (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sequence     bigint  NOT NULL DEFAULT 0,
    entry_sha256 text    NOT NULL DEFAULT repeat('0', 64)
);
INSERT INTO audit_head DEFAULT VALUES;

-- Checkpoints published on gov.audit (signed heads), kept for the verifier.
CREATE TABLE audit_checkpoints (
    size            bigint      PRIMARY KEY CHECK (size >= 0),
    head_sha256     text        NOT NULL,
    checkpointed_at timestamptz NOT NULL,
    key_id          text        NOT NULL,
    body            jsonb       NOT NULL  -- the AuditCheckpoint data as published
);

-- The database refuses to change history: UPDATE, DELETE and TRUNCATE on the audit log
-- and its checkpoints raise an error, whoever asks. (The schema's owner can still drop
-- the trigger; that is why the heads are signed and published outside the database.)
CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% refused: the audit log is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Belt and braces for roles other than the owner (e.g. a read-only ops role).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints FROM PUBLIC;
