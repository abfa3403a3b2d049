-- A duplicate filing (the same body again, newly signed) is answered with a copy of
-- the original decision, bound to the duplicate's signature, on the lab's feed only.
-- Each submission keeps that decision as it was published, and counts its duplicates
-- per clock hour (answered up to FR_INTAKE_DUPLICATES_ANSWERED_PER_HOUR): a lab
-- re-sending a filing costs a counter on the row that exists anyway.
ALTER TABLE submissions
    ADD COLUMN decision jsonb,  -- the SubmissionAccepted / SubmissionRejected data
    ADD COLUMN duplicates integer NOT NULL DEFAULT 0,  -- every duplicate, ever
    ADD COLUMN duplicates_hour timestamptz,  -- the clock hour of the latest duplicate
    ADD COLUMN duplicates_in_hour integer NOT NULL DEFAULT 0;

-- Submissions decided before this migration: the decision rebuilt from the row (a
-- content rejection's field errors were not kept; its reason and detail were).
UPDATE submissions SET decision = jsonb_build_object(
        'submission_id', submission_id, 'lab_id', lab_id, 'model_id', model_id,
        'model', body -> 'model', 'evaluation_access', body -> 'evaluation_access',
        'reason', reason, 'detail', detail, 'criteria_version', criteria_version,
        'requested_review_days', body -> 'requested_review_days',
        'review_days', review_days, 'accepted_at', received_at, 'deadline', deadline,
        'filed_event_id', filed_event_id, 'body_sha256', body_sha256)
    WHERE state <> 'rejected';
UPDATE submissions SET decision = jsonb_build_object(
        'reason', reason, 'detail', detail, 'field_errors', '[]'::jsonb,
        'rejected_event_id', filed_event_id, 'rejected_at', received_at,
        'submission_id', submission_id, 'lab_id', lab_id, 'body_sha256', body_sha256)
    WHERE state = 'rejected';
ALTER TABLE submissions ALTER COLUMN decision SET NOT NULL;
