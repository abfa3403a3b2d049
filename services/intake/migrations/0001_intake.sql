-- Intake: the lab registry, submissions, the review-window schedule, status history.

-- Labs and their Ed25519 public keys. Key ids are per lab; rotation adds a key and
-- ends the old one's window (valid_until); a revoked key is refused at once.
CREATE TABLE labs (
    lab_id        text        PRIMARY KEY,
    name          text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lab_keys (
    lab_id         text        NOT NULL REFERENCES labs,
    key_id         text        NOT NULL,
    public_key     bytea       NOT NULL CHECK (length(public_key) = 32),
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz,
    revoked_at     timestamptz,
    revoked_reason text,
    added_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lab_id, key_id),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);

-- Nonces of authenticated inputs. An input older than the clock skew is refused
-- as stale before its nonce is looked at, so older rows can be purged.
CREATE TABLE seen_nonces (
    lab_id    text        NOT NULL,
    key_id    text        NOT NULL,
    nonce     text        NOT NULL,
    issued_at timestamptz NOT NULL,
    event_id  text        NOT NULL,
    PRIMARY KEY (lab_id, key_id, nonce)
);
CREATE INDEX seen_nonces_issued_at ON seen_nonces (issued_at);

-- One row per submission id, written by the first authenticated, fresh filing
-- (accepted, or rejected on its content). It binds the id to that body:
-- the same body again is a duplicate, another body a conflict.
CREATE TABLE submissions (
    submission_id    uuid        PRIMARY KEY,
    lab_id           text        NOT NULL,
    body_sha256      text        NOT NULL,
    filed_event_id   text        NOT NULL,
    body             jsonb       NOT NULL,  -- the signed data as received
    state            text        NOT NULL
        CHECK (state IN ('accepted', 'rejected', 'withdrawn', 'closed')),
    reason           text        NOT NULL,  -- acceptance or rejection reason code
    detail           text        NOT NULL,
    criteria_version text,
    model_id         text,
    review_days      integer,
    received_at      timestamptz NOT NULL,
    deadline         timestamptz,
    withdrawn_at     timestamptz,
    closed_at        timestamptz
);

-- The durable review-window clock: polled by every replica with FOR UPDATE SKIP
-- LOCKED; closing marks the row and queues ReviewWindowClosed in one transaction.
CREATE TABLE review_windows (
    submission_id uuid        PRIMARY KEY REFERENCES submissions,
    deadline      timestamptz NOT NULL,
    state         text        NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'closed', 'cancelled')),
    closed_at     timestamptz,
    closed_by     text,         -- the replica that closed it (ops)
    traceparent   text          -- the acceptance's trace: the close continues it
);
CREATE INDEX review_windows_due ON review_windows (deadline) WHERE state = 'open';

-- Everything intake answered about a submission id, in order (status and audit).
-- submission_id is NULL when the refused input named no readable submission.
CREATE TABLE submission_history (
    id            bigserial   PRIMARY KEY,
    submission_id uuid,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL,
    event_id      text,
    reason        text,
    detail        text        NOT NULL
);
CREATE INDEX submission_history_by_submission ON submission_history (submission_id, id);
CREATE INDEX submission_history_by_event ON submission_history (event_id);
