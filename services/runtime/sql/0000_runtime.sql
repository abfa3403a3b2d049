-- Runtime tables every service owns in its schema: inbox, outbox, relay checkpoint.

-- Inbox: one row per (consumer, event id) applied. Inserted in the same
-- transaction as the state change, so a redelivered event changes nothing.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Outbox: events written by handlers in their transaction, published by the
-- relay in id order. traceparent keeps the producing span so traces survive.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    topic         text        NOT NULL,
    key           bytea,
    event_id      text        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    payload       bytea       NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    traceparent   text,
    tracestate    text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    batch         bigint,
    published_at  timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_batch ON outbox (batch) WHERE published_at IS NULL;

-- Batch numbers only grow, across restarts: the relay commits "next batch" to
-- Kafka in the same transaction as the batch's records (see relay.py).
CREATE SEQUENCE outbox_batch_seq;

-- Wake the relay at commit time instead of polling.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
