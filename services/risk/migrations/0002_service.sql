-- The running service (handlers, timers, CLIs) on the phase-1 schema.

-- Events of a submission arrive on three topics with no order between them: a finding
-- can come before intake's SubmissionAccepted. The review row is created by whichever
-- comes first (the model id names the lab: <lab_id>/<name>@<version>); the window's
-- deadline is known from SubmissionAccepted or ReviewWindowClosed.
ALTER TABLE reviews ALTER COLUMN window_deadline DROP NOT NULL;

-- One checkpoint per interval, also when the log did not grow: a checkpoint is
-- identified by its size and time (the signed nonce names both).
ALTER TABLE audit_checkpoints DROP CONSTRAINT audit_checkpoints_pkey;
ALTER TABLE audit_checkpoints ADD PRIMARY KEY (size, checkpointed_at);

-- An order the reviewers' quorum lifted (RestrictionLiftOrdered) is lifted once the
-- access service confirms it (RestrictionLifted: lifted_at).
ALTER TABLE orders ADD COLUMN lift_ordered_at timestamptz;

CREATE INDEX decisions_escalation ON decisions (escalation_id);
CREATE INDEX escalations_submission ON escalations (submission_id);
CREATE INDEX audit_log_kind ON audit_log (kind);
