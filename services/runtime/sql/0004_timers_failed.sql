-- Timers that gave up are counted for the metrics (timers.due_and_failed) on every
-- scrape: a partial index keeps that count to the few failed rows, not the table.
CREATE INDEX timers_failed ON timers (kind) WHERE state = 'failed';
