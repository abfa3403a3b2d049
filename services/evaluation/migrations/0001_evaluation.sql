-- Evaluations, the leased job queue, attempts, findings, and evaluator keys.

-- One row per accepted submission. endpoint/api_model/credential_ref are what
-- workers need to reach the model; the secret itself is never stored.
CREATE TABLE evaluations (
    submission_id     uuid        PRIMARY KEY,
    lab_id            text        NOT NULL,
    model_id          text        NOT NULL,
    endpoint          text        NOT NULL,
    api_model         text        NOT NULL,
    credential_ref    text        NOT NULL,
    registry_version  text        NOT NULL,
    deadline          timestamptz NOT NULL,
    started_at        timestamptz NOT NULL,
    ended_by          text CHECK (ended_by IN ('all_suites_ended', 'window_closed', 'withdrawn')),
    ended_at          timestamptz
);

-- The queue: one job per planned suite. Workers claim with FOR UPDATE SKIP LOCKED
-- and hold a lease (lease_token, renewed by heartbeats); a job whose lease
-- expired belongs to a dead worker and is taken back.
CREATE TABLE jobs (
    job_id            uuid        PRIMARY KEY,
    submission_id     uuid        NOT NULL REFERENCES evaluations,
    suite_id          text        NOT NULL,
    suite_version     text        NOT NULL,
    domain            text        NOT NULL,
    capability        text        NOT NULL,
    task_ref          text        NOT NULL,
    timeout_seconds   integer     NOT NULL CHECK (timeout_seconds > 0),
    max_attempts      integer     NOT NULL CHECK (max_attempts > 0),
    state             text        NOT NULL DEFAULT 'pending' CHECK (state IN
                          ('pending', 'running', 'completed', 'failed', 'incomplete', 'cancelled')),
    attempts          integer     NOT NULL DEFAULT 0,
    available_at      timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    last_failure      text,
    last_error        text,
    traceparent       text,  -- the submission's trace, continued by the worker
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (submission_id, suite_id, suite_version),
    CHECK ((state = 'running') = (lease_token IS NOT NULL))
);
CREATE INDEX jobs_ready ON jobs (available_at, created_at) WHERE state = 'pending';  -- claim order
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_by_submission ON jobs (submission_id);

-- Every attempt, for inspection: who ran it, how it ended, where its log is.
-- A released attempt (graceful shutdown) does not count, so its number comes again.
CREATE TABLE job_attempts (
    lease_token       uuid        PRIMARY KEY,
    job_id            uuid        NOT NULL REFERENCES jobs,
    attempt           integer     NOT NULL,
    worker            text        NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    outcome           text        NOT NULL DEFAULT 'running' CHECK (outcome IN
                          ('running', 'succeeded', 'failed', 'lease_lost', 'stopped', 'released')),
    failure           text,
    error             text,
    evidence_ref      text,
    inspect_seconds   double precision
);
CREATE INDEX job_attempts_by_job ON job_attempts (job_id, attempt);

-- Findings, automated (job_id set) and manual (external_finding_id set).
-- finding_id is deterministic, so the primary key refuses a second recording.
CREATE TABLE findings (
    finding_id           uuid        PRIMARY KEY,
    submission_id        uuid        NOT NULL REFERENCES evaluations,
    job_id               uuid        REFERENCES jobs,
    external_finding_id  uuid        UNIQUE,
    content_sha256       text,
    method               text        NOT NULL,
    evaluator            text        NOT NULL,
    suite_id             text        NOT NULL,
    suite_version        text        NOT NULL,
    domain               text        NOT NULL,
    capability           text        NOT NULL,
    metric               text        NOT NULL,
    score                double precision NOT NULL,
    stderr               double precision,
    samples_total        integer,
    samples_scored       integer,
    evidence_ref         text        NOT NULL,
    evidence_sha256      text,
    summary              text,
    recorded_at          timestamptz NOT NULL
);
CREATE INDEX findings_by_submission ON findings (submission_id);
CREATE INDEX findings_by_job ON findings (job_id);

-- Ed25519 public keys of external evaluators (red teams), by key id.
CREATE TABLE evaluator_keys (
    key_id        text        PRIMARY KEY,
    evaluator_id  text        NOT NULL,
    public_key    bytea       NOT NULL CHECK (length(public_key) = 32),
    added_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Nonces of accepted signatures: a captured event can't be replayed.
CREATE TABLE signature_nonces (
    key_id   text        NOT NULL,
    nonce    text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
