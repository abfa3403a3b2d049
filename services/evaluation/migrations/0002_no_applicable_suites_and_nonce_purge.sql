-- An accepted model that no enabled suite applies to is recorded as an evaluation
-- that ended at once (EvaluationCompleted, ended_by = no_applicable_suites).
ALTER TABLE evaluations DROP CONSTRAINT evaluations_ended_by_check;
ALTER TABLE evaluations ADD CONSTRAINT evaluations_ended_by_check CHECK (ended_by IN
    ('all_suites_ended', 'window_closed', 'withdrawn', 'no_applicable_suites'));

-- Nonces are purged once no fresh signature can carry them (housekeeping.py).
CREATE INDEX signature_nonces_by_seen_at ON signature_nonces (seen_at);
