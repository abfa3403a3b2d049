-- Test handler state: how many times each event was applied (must stay 1).
CREATE TABLE applied (
    event_id    text PRIMARY KEY,
    key         text NOT NULL,
    seq         integer NOT NULL,
    times       integer NOT NULL DEFAULT 1,
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
