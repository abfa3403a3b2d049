-- Access on the runtime: a row per model (the lock every change of its policy takes),
-- what a version could not compile as written, and who signed an acknowledgement.

-- One row per model ever restricted. Handlers and timers lock it (FOR UPDATE) before
-- they read the model's orders or versions, so one model's changes are serialised
-- across replicas; model_heads cannot serve, it has no row before version 1.
CREATE TABLE models (
    model_id      text        PRIMARY KEY,
    lab_id        text        NOT NULL,
    first_seen_at timestamptz NOT NULL
);

-- Orders compiled fail closed in a version (unknown country group, unusable order):
-- the operator's alert, shown by `python -m services.access.cli models`.
ALTER TABLE model_policies ADD COLUMN problems text[] NOT NULL DEFAULT '{}';

-- The acknowledgement's signer (the trust library authenticated it) and the nonce it
-- spent; received_at is the broker's append time of the record.
ALTER TABLE acknowledgements ADD COLUMN key_id text NOT NULL DEFAULT '';
CREATE INDEX acknowledgements_by_model ON acknowledgements (model_id, version, received_at);
