-- The review-window clock is the runtime's durable-timer mechanism now (one
-- ``review-window`` timer per accepted submission, keyed by its id): open
-- windows move there with the trace they carried; the table goes.
INSERT INTO timers (kind, key, due_at, traceparent)
SELECT 'review-window', submission_id::text, deadline, traceparent
FROM review_windows WHERE state = 'open';
DROP TABLE review_windows;
