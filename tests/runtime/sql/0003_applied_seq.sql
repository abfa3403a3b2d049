-- A record the database refuses to store (tests/runtime/test_runs.py: a negative seq).
ALTER TABLE applied ADD CONSTRAINT applied_seq_not_negative CHECK (seq >= 0);
