-- The hourly refusal counts move to the trust library's table (services/trust/sql,
-- applied before this file), which access uses for the same limit.
INSERT INTO trust_refusal_counts (source, hour, reason, refused, first_event_id, last_event_id)
SELECT source, hour, reason, refused, first_event_id, last_event_id FROM refusal_counts;
DROP TABLE refusal_counts;
