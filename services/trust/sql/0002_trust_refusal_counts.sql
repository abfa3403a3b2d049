-- Refusals of input that may not speak for itself (it did not authenticate, or it is
-- about another principal's record), counted per claimed sender, hour and reason
-- instead of kept one by one; the answers to them are limited by these counts
-- (services/trust/answers.py). A flood costs one counter per claimed sender, reason
-- and hour; RefusalCountPurge deletes hours past the service's retention.
CREATE TABLE trust_refusal_counts (
    source          text        NOT NULL,  -- the principal id the input claimed, or '-'
    hour            timestamptz NOT NULL,
    reason          text        NOT NULL,
    refused         integer     NOT NULL,
    first_event_id  text,
    last_event_id   text,
    PRIMARY KEY (source, hour, reason)
);
CREATE INDEX trust_refusal_counts_by_hour ON trust_refusal_counts (hour);
