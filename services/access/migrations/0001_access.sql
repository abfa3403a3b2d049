-- Access: restriction orders, model policy versions, acknowledgements.
-- (Durable timers for order expiry and compliance deadlines are the runtime's.)

-- Every RestrictionOrdered received, with its end once final (model.py's state
-- machine: ordered/effective are the time; lifted/expired/superseded are stored).
CREATE TABLE orders (
    order_id       uuid        PRIMARY KEY,
    model_id       text        NOT NULL,
    lab_id         text        NOT NULL,
    submission_id  uuid        NOT NULL,
    body           jsonb       NOT NULL,  -- the RestrictionOrdered data as received
    effective_at   timestamptz NOT NULL,
    expires_at     timestamptz,
    supersedes     uuid,
    received_at    timestamptz NOT NULL,
    ended          text        CHECK (ended IN ('lifted', 'expired', 'superseded')),
    ended_at       timestamptz,
    superseded_by  uuid,
    lifted_by      text,
    end_reason     text,
    CHECK ((ended IS NULL) = (ended_at IS NULL)),
    CHECK (expires_at IS NULL OR expires_at > effective_at)
);
-- The orders in a model's policy: those not ended.
CREATE INDEX orders_in_policy ON orders (model_id) WHERE ended IS NULL;
-- An order may arrive after the order that supersedes it.
CREATE INDEX orders_supersedes ON orders (supersedes) WHERE supersedes IS NOT NULL;

-- Every published version of a model's policy (the feed keeps only the latest;
-- acknowledgements and audits quote older ones).
CREATE TABLE model_policies (
    model_id               text        NOT NULL,
    version                integer     NOT NULL CHECK (version >= 1),
    lab_id                 text        NOT NULL,
    cedar_policies         text        NOT NULL,
    content_hash           text        NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    order_ids              uuid[]      NOT NULL,
    orders                 jsonb       NOT NULL,  -- EnforcedOrder windows
    schema_version         text        NOT NULL,
    country_groups_version text        NOT NULL,
    published_at           timestamptz NOT NULL,
    acknowledge_by         timestamptz NOT NULL,
    PRIMARY KEY (model_id, version),
    CHECK (acknowledge_by >= published_at)
);

-- The current version per model, locked (FOR UPDATE) by whoever publishes the
-- next one, so versions of one model are assigned one at a time.
CREATE TABLE model_heads (
    model_id text    PRIMARY KEY,
    version  integer NOT NULL,
    FOREIGN KEY (model_id, version) REFERENCES model_policies (model_id, version)
);

-- Accepted acknowledgements (refused ones are answered with ComplianceRejected and
-- kept in the runtime's inbox/outbox records). One event id, one row.
CREATE TABLE acknowledgements (
    event_id           text        PRIMARY KEY,
    model_id           text        NOT NULL,
    version            integer     NOT NULL,
    lab_id             text        NOT NULL,
    content_hash       text        NOT NULL,
    enforced_at        timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    enforcement_points text[]      NOT NULL,
    FOREIGN KEY (model_id, version) REFERENCES model_policies (model_id, version)
);
CREATE INDEX acknowledgements_by_version ON acknowledgements (model_id, version);

-- ComplianceOverdue raised, once per version (its event id is derived from both).
CREATE TABLE compliance_overdue (
    model_id    text        NOT NULL,
    version     integer     NOT NULL,
    event_id    text        NOT NULL UNIQUE,
    detected_at timestamptz NOT NULL,
    PRIMARY KEY (model_id, version),
    FOREIGN KEY (model_id, version) REFERENCES model_policies (model_id, version)
);
