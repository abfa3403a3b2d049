-- The inbox remembers what it applied, not just the id: a redelivery has the
-- same bytes, a different record reusing an id does not (see inbox.claim).
ALTER TABLE inbox ADD COLUMN digest bytea;
