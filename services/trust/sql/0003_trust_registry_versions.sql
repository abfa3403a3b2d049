-- The version of each principal's registry entry this schema holds
-- (services/trust/replica.py). In the schema of the service that owns a registry
-- (intake: labs) it is the version of the entry it published last, +1 on every change;
-- in a schema that receives the registry (access: labs) it is the version it applied
-- last, so an older or repeated snapshot changes nothing.
CREATE TABLE trust_registry_versions (
    kind          text   NOT NULL,
    principal_id  text   NOT NULL,
    version       bigint NOT NULL CHECK (version >= 1),
    PRIMARY KEY (kind, principal_id),
    FOREIGN KEY (kind, principal_id) REFERENCES trust_principals
);
