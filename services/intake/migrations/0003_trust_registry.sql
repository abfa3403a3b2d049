-- Labs, their keys and spent nonces move to the trust library's tables
-- (services/trust/sql, applied before this file), where every service keeps the
-- principals it verifies. Key ids become unique per kind (a key id belongs to one
-- lab for ever): a deployment where two labs share a key id must re-key one first.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM lab_keys GROUP BY key_id HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'two labs share a key id (%): revoke and re-add one under a new id '
            'before upgrading', (SELECT string_agg(key_id, ', ') FROM
                (SELECT key_id FROM lab_keys GROUP BY key_id HAVING count(*) > 1) AS shared);
    END IF;
END $$;

INSERT INTO trust_principals (kind, principal_id, name, registered_at)
SELECT 'lab', lab_id, name, registered_at FROM labs;

INSERT INTO trust_keys (kind, key_id, principal_id, public_key, valid_from, valid_until,
                        revoked_at, revoked_reason, added_at)
SELECT 'lab', key_id, lab_id, public_key, valid_from, valid_until, revoked_at,
       revoked_reason, added_at
FROM lab_keys;

INSERT INTO trust_nonces (kind, principal_id, key_id, nonce, issued_at, event_id, spent_at)
SELECT 'lab', lab_id, key_id, nonce, issued_at, event_id, issued_at FROM seen_nonces;

DROP TABLE seen_nonces;
DROP TABLE lab_keys;
DROP TABLE labs;

-- Refusals of input that may not speak for a submission (unauthenticated, or about
-- another lab's id) are counted per claimed sender, hour and reason instead of kept
-- one by one in submission_history; the answers are rate-limited by these counts.
DELETE FROM submission_history WHERE submission_id IS NULL;
CREATE TABLE refusal_counts (
    source          text        NOT NULL,  -- the lab id the input claimed, or '-'
    hour            timestamptz NOT NULL,
    reason          text        NOT NULL,
    refused         integer     NOT NULL,
    first_event_id  text,
    last_event_id   text,
    PRIMARY KEY (source, hour, reason)
);
CREATE INDEX submission_history_at ON submission_history (at);
