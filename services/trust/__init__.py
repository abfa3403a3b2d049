"""The trust library: who sent an input, and may the agency act on it.

Shared by every service that takes signed input or reaches out to a lab's
systems (intake: labs; evaluation: external evaluators and lab endpoints; risk:
reviewers; access: labs' acknowledgements). It imports contracts and the
runtime, never a service. One module per concern:

- ``refusal``: ``Refusal``, and what of it an unauthenticated sender is told;
- ``unverified``: reading a record's claims before anything is trusted;
- ``digest``, ``signatures``, ``freshness``, ``verifier``: body digests, Ed25519
  over the received bytes, freshness at the broker's append time, ``authenticate``;
- ``principals``, ``public_keys``, ``registry``, ``cli``: key registries by kind
  and their operator commands;
- ``replica``: the lab registry as its owner (intake) publishes it and another
  service (access) applies it;
- ``nonces``: the nonce purge job;
- ``answers``: how often input that may not speak for itself is answered (per
  claimed sender and hour);
- ``credentials``: whose secrets a credential reference may name;
- ``endpoints``, ``http_guard``: the endpoint policy against SSRF, at submission
  and at connection time;
- ``tokens``: bearer tokens of HTTP callers (access's agency API, the console, the
  lab's decision API);
- ``repository``: all of its SQL; its tables come from ``TRUST_SQL``, which a
  service applies into its own schema with its migrations:
  ``migrate(conn, schema, TRUST_SQL, service_migrations)``.
"""

from pathlib import Path

TRUST_SQL = Path(__file__).parent / "sql"
"""The library's migrations (versions ``sql/NNNN_trust_*``): apply before the service's own."""
