-- The trust library's tables, applied into the schema of each service that uses it
-- (migrate(conn, schema, TRUST_SQL, service_migrations)): principals of any kind
-- (lab, evaluator, reviewer, ...), their Ed25519 keys, and spent signature nonces.

CREATE TABLE trust_principals (
    kind           text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    principal_id   text        NOT NULL CHECK (principal_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    name           text        NOT NULL,
    registered_at  timestamptz NOT NULL,
    removed_at     timestamptz,
    removed_reason text,
    PRIMARY KEY (kind, principal_id)
);

-- A key id belongs to one principal of its kind for ever, and a public key to one
-- key id: re-adding a key (under its id or another) can't undo a revocation.
CREATE TABLE trust_keys (
    kind           text        NOT NULL,
    key_id         text        NOT NULL CHECK (key_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    principal_id   text        NOT NULL,
    public_key     bytea       NOT NULL UNIQUE CHECK (length(public_key) = 32),
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz,
    revoked_at     timestamptz,
    revoked_reason text,
    added_at       timestamptz NOT NULL,
    PRIMARY KEY (kind, key_id),
    FOREIGN KEY (kind, principal_id) REFERENCES trust_principals,
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX trust_keys_by_principal ON trust_keys (kind, principal_id, valid_from);

-- Final means final, whatever SQL runs: a key's identity never changes, a revocation
-- is never lifted, a removal never undone, and nothing is deleted.
CREATE FUNCTION trust_keys_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'trust_keys rows are never deleted (revoke the key instead)';
    END IF;
    IF (NEW.kind, NEW.key_id, NEW.principal_id, NEW.public_key, NEW.added_at)
        IS DISTINCT FROM (OLD.kind, OLD.key_id, OLD.principal_id, OLD.public_key, OLD.added_at)
    THEN
        RAISE EXCEPTION 'key % of % %: a key''s identity never changes',
            OLD.key_id, OLD.kind, OLD.principal_id;
    END IF;
    IF OLD.revoked_at IS NOT NULL AND (NEW.revoked_at, NEW.revoked_reason, NEW.valid_from,
            NEW.valid_until) IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_reason,
            OLD.valid_from, OLD.valid_until)
    THEN
        RAISE EXCEPTION 'key % of % % is revoked: revocation is final',
            OLD.key_id, OLD.kind, OLD.principal_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trust_keys_final BEFORE UPDATE OR DELETE ON trust_keys
    FOR EACH ROW EXECUTE FUNCTION trust_keys_final();

CREATE FUNCTION trust_principals_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'trust_principals rows are never deleted (remove the principal)';
    END IF;
    IF (NEW.kind, NEW.principal_id, NEW.registered_at)
        IS DISTINCT FROM (OLD.kind, OLD.principal_id, OLD.registered_at)
       OR (OLD.removed_at IS NOT NULL
           AND (NEW.removed_at, NEW.removed_reason) IS DISTINCT FROM
               (OLD.removed_at, OLD.removed_reason))
    THEN
        RAISE EXCEPTION '% %: a principal''s id never changes and a removal is final',
            OLD.kind, OLD.principal_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trust_principals_final BEFORE UPDATE OR DELETE ON trust_principals
    FOR EACH ROW EXECUTE FUNCTION trust_principals_final();

-- Nonces of authentic, fresh signatures, per principal and key. A row is kept while a
-- copy of its record could still be accepted: FreshnessPolicy.nonce_retention after
-- issued_at (services/trust/freshness.py); the purge job deletes older rows.
CREATE TABLE trust_nonces (
    kind         text        NOT NULL,
    principal_id text        NOT NULL,
    key_id       text        NOT NULL,
    nonce        text        NOT NULL,
    issued_at    timestamptz NOT NULL,
    event_id     text        NOT NULL,  -- the record that spent it (audit)
    spent_at     timestamptz NOT NULL,
    PRIMARY KEY (kind, principal_id, key_id, nonce)
);
CREATE INDEX trust_nonces_by_issued_at ON trust_nonces (issued_at);
