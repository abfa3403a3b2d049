-- Durable timers (timers.py, scheduler.py): one row per (kind, key), fired once.
CREATE TABLE timers (
    kind          text        NOT NULL,
    key           text        NOT NULL,
    due_at        timestamptz NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    traceparent   text,
    tracestate    text,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'fired', 'cancelled', 'failed')),
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    scheduled_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at      timestamptz,
    fired_by      text,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';

-- A timer scheduled (or moved) earlier than the scheduler's next wake-up wakes it.
CREATE FUNCTION timers_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_timers', '');
    RETURN NULL;
END $$;
CREATE TRIGGER timers_changed AFTER INSERT OR UPDATE OF due_at ON timers
    FOR EACH STATEMENT EXECUTE FUNCTION timers_notify();

-- Relay leadership. The advisory lock elects a relay; the epoch fences it: every
-- claim and mark names the epoch it was elected with, and a relay whose lock
-- was lost (a killed session, a failover) finds the epoch moved on and stops.
-- The identity is created with the schema and travels with every checkpoint, so
-- a checkpoint left by an earlier incarnation of this outbox (a schema created
-- again, a restore) is recognised as someone else's.
CREATE TABLE relay_leadership (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint      NOT NULL,
    identity    uuid        NOT NULL,
    leader      text,
    elected_at  timestamptz
);
INSERT INTO relay_leadership (epoch, identity) VALUES (0, gen_random_uuid());

-- Claims look for rows not yet in any batch.
DROP INDEX outbox_pending;
CREATE INDEX outbox_unclaimed ON outbox (id) WHERE published_at IS NULL AND batch IS NULL;
