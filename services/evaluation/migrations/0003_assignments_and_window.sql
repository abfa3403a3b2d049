-- External evaluators are assigned to submissions by an operator
-- (`cli evaluators assign`); only an assigned evaluator's findings about a
-- submission are accepted, and only while its review window is open.
CREATE TABLE evaluator_assignments (
    evaluator_id   text        NOT NULL,
    submission_id  uuid        NOT NULL REFERENCES evaluations,
    assigned_at    timestamptz NOT NULL,
    assigned_by    text        NOT NULL,
    PRIMARY KEY (evaluator_id, submission_id)
);
CREATE INDEX evaluator_assignments_by_submission ON evaluator_assignments (submission_id);

-- When ReviewWindowClosed was applied, whatever had ended the evaluation before
-- (an evaluation of no applicable suites, or all suites ended, stays open for
-- manual findings until then).
ALTER TABLE evaluations ADD COLUMN window_closed_at timestamptz;
