-- External evaluators, their keys and spent nonces move to the trust library's
-- tables (services/trust/sql, applied before this file), where every service keeps
-- the principals it verifies. Evaluators had no registry rows of their own: every
-- evaluator id with a key or an assignment becomes a registered evaluator (named by
-- its id, registered when its first key was added or it was first assigned).
--
-- The registry's rules are stricter than the old table's, which let `add-key`
-- un-revoke a key and hand a key id to another evaluator. Data those rules refuse
-- stops the upgrade with what to fix, rather than being carried over:
-- ids that are not slugs, key ids the contract refuses, one public key under several
-- key ids (re-adding a revoked key under a new id would undo its revocation) and
-- small-order or non-canonical public keys (anyone can forge signatures for those).
DO $$
DECLARE
    found text;
BEGIN
    SELECT string_agg(DISTINCT quote_literal(evaluator_id), ', ') INTO found
    FROM (SELECT evaluator_id FROM evaluator_keys
          UNION SELECT evaluator_id FROM evaluator_assignments) AS ids
    WHERE evaluator_id !~ '^[a-z0-9][a-z0-9._-]{0,63}$';
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'evaluator ids that are not registry ids (lower-case letters, digits, '
            '".", "_" and "-", at most 64): %. Re-key those evaluators under valid ids '
            '(delete their rows from evaluator_keys and evaluator_assignments) before upgrading',
            found;
    END IF;

    SELECT string_agg(quote_literal(key_id), ', ' ORDER BY key_id) INTO found
    FROM evaluator_keys WHERE key_id !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'key ids that signature.key_id cannot carry: %. Delete them from '
            'evaluator_keys before upgrading (nothing can have been signed with them)', found;
    END IF;

    SELECT string_agg(ids, '; ') INTO found FROM (
        SELECT string_agg(key_id, ', ' ORDER BY key_id) AS ids
        FROM evaluator_keys GROUP BY public_key HAVING count(*) > 1) AS shared;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'one public key is registered under several key ids (%): a key pair '
            'is registered once, and a revoked key re-added under a new id would be trusted '
            'again. Keep one row of each (revoked, if any of them was) and have the evaluator '
            'generate a new key pair before upgrading', found;
    END IF;

    SELECT string_agg(quote_literal(key_id), ', ' ORDER BY key_id) INTO found
    FROM evaluator_keys
    WHERE public_key IN (  -- the eight points of small order (RFC 8032 encodings)
            '\x0100000000000000000000000000000000000000000000000000000000000000',
            '\xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
            '\x0000000000000000000000000000000000000000000000000000000000000000',
            '\x0000000000000000000000000000000000000000000000000000000000000080',
            '\xc7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
            '\xc7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
            '\x26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
            '\x26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85')
       OR (get_byte(public_key, 0) >= 237  -- y >= 2^255 - 19: not a canonical encoding
           AND substring(public_key FROM 2 FOR 30) = decode(repeat('ff', 30), 'hex')
           AND get_byte(public_key, 31) & 127 = 127);
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'keys that are small-order or non-canonical Ed25519 points (%): '
            'anyone can forge signatures that verify for them. Revoke them, have the '
            'evaluators generate new key pairs, and delete these rows before upgrading', found;
    END IF;
END $$;

INSERT INTO trust_principals (kind, principal_id, name, registered_at)
SELECT 'evaluator', evaluator_id, evaluator_id, min(since)
FROM (SELECT evaluator_id, added_at AS since FROM evaluator_keys
      UNION ALL SELECT evaluator_id, assigned_at FROM evaluator_assignments) AS known
GROUP BY evaluator_id;

INSERT INTO trust_keys (kind, key_id, principal_id, public_key, valid_from, valid_until,
                        revoked_at, revoked_reason, added_at)
SELECT 'evaluator', key_id, evaluator_id, public_key, added_at, NULL, revoked_at,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked before the trust registry' END, added_at
FROM evaluator_keys;

-- The old store kept when a nonce was seen, not its signature's issued_at; the two
-- differ by at most the old freshness window, which the retention's margins cover.
INSERT INTO trust_nonces (kind, principal_id, key_id, nonce, issued_at, event_id, spent_at)
SELECT 'evaluator', k.evaluator_id, n.key_id, n.nonce, n.seen_at,
       'spent before the trust registry', n.seen_at
FROM signature_nonces n JOIN evaluator_keys k USING (key_id);

DROP TABLE signature_nonces;
DROP TABLE evaluator_keys;

-- An assignment names a registered evaluator (removed ones stay: their findings are
-- refused because their keys are revoked, and the assignment history is kept).
ALTER TABLE evaluator_assignments
    ADD COLUMN evaluator_kind text NOT NULL DEFAULT 'evaluator' CHECK (evaluator_kind = 'evaluator'),
    ADD FOREIGN KEY (evaluator_kind, evaluator_id) REFERENCES trust_principals;
