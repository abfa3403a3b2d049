-- Rows the relay could not deliver because their topic does not exist: a tenant's
-- feed (labs.<id>.answers ...) that was never provisioned, or deleted. They are
-- moved here instead of stopping the outbox for everyone; an operator requeues
-- them once the feed exists (python -m services.runtime.outbox requeue).
CREATE TABLE outbox_parked (
    id            bigint      PRIMARY KEY,
    topic         text        NOT NULL,
    key           bytea,
    event_id      text        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    payload       bytea       NOT NULL,
    headers       jsonb       NOT NULL,
    traceparent   text,
    tracestate    text,
    created_at    timestamptz NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now(),
    reason        text        NOT NULL
);
CREATE INDEX outbox_parked_topic ON outbox_parked (topic, id);
