-- State the benchmark handler writes: one row per applied event.
CREATE TABLE ticks (event_id text PRIMARY KEY, seq integer NOT NULL);
