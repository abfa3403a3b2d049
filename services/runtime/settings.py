"""Settings from environment variables (prefix ``FR_``), defaults for local dev.

Every service reads the same names for what every service has: its name
(``FR_SERVICE_NAME``: consumer groups, the relay's identity, traces), its
schema (``FR_DB_SCHEMA``) and its Kafka names (``FR_TOPIC_PREFIX``, prepended to
every registry topic, consumer group, transactional id and the relays'
checkpoint topic, so a test rig or a staging stack runs under names of its own,
which its principal's prefixed ACLs cover). The Kafka connection and the
principal it authenticates as are ``KafkaSettings`` (services/runtime/kafka.py).
A service's own settings add a prefix of their own (``FR_INTAKE_``,
``FR_EVALUATION_`` ...). The defaults match deploy/stack.sh, so a service
started on a developer's machine finds the local Kafka and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic_settings import SettingsConfigDict

from services.runtime.kafka import KafkaSettings, aiokafka_options


class RuntimeSettings(KafkaSettings):
    # "none" in a variable means None (e.g. FR_HTTP_PORT=none: no HTTP server).
    model_config = SettingsConfigDict(env_prefix="FR_", extra="ignore", env_parse_none_str="none")

    service_name: str = "frontier-review"
    db_schema: str = "public"
    topic_prefix: str = ""
    # Registering a tenant (a lab, evaluator or reviewer) with a service's CLI also
    # provisions its Kafka principal (services/runtime/onboarding.py): as the operator,
    # writing the tenant's credentials file into tenant_credentials_dir.
    kafka_operator_credentials_file: Path | None = None
    tenant_credentials_dir: Path = Path(".local/kafka/tenants")
    principal_prefix: str = ""  # in front of tenant principals' names (a test rig's)

    database_url: str = "postgresql://frontier:frontier@127.0.0.1:15432/frontier_review"
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Consumers: a fetched batch is applied in runs, one Postgres transaction per
    # run of good records (see consumer.py), at most this many bytes per run.
    consumer_batch_size: int = 500
    consumer_run_max_bytes: int = 8_000_000
    consumer_fetch_wait_ms: int = 500
    max_message_bytes: int = 1_000_000
    handler_max_attempts: int = 3
    handler_retry_backoff_s: float = 0.2
    transient_retry_s: float = 1.0
    graceful_timeout_s: float = 15.0

    # Outbox relay
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0

    # Housekeeping by the elected relay: inbox rows outlive the longest topic
    # retention (90 days, contracts/registry.py), so no redelivery applies twice.
    prune_interval_s: float = 600.0
    outbox_keep_days: int = 7
    inbox_keep_days: int = 100

    # Durable timers: how often a replica looks for due timers when nothing woke it.
    timer_poll_s: float = 1.0
    timer_batch: int = 100

    # Telemetry: "jsonl" appends finished spans to otel_file, "otlp" sends them to
    # otel_endpoint (Jaeger, an OTel collector), "none" only propagates context.
    # A span per SQL statement is for debugging (it costs more than the statement).
    otel_exporter: Literal["none", "otlp", "jsonl", "console"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4318"
    otel_file: Path = Path(".local/traces.jsonl")
    otel_db_statements: bool = False
    # Share of traces recorded (parent-based: a sampled upstream decides for its hops).
    otel_sample_ratio: float = 1.0
    log_level: str = "INFO"
    log_json: bool = True

    # The embedded HTTP server (health, readiness, metrics, the service's own
    # routes); port 0 picks a free port, None turns it off.
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    # /readyz: its one statement's bound. /metrics: values read from the database and
    # Kafka are refreshed at most every metrics_refresh_s (scrapes in between reuse
    # them), and a scrape waits at most metrics_timeout_s for a refresh.
    readiness_timeout_s: float = 1.0
    metrics_refresh_s: float = 5.0
    metrics_timeout_s: float = 2.0

    def topic(self, name: str) -> str:
        """The actual name of registry topic ``name`` (or any Kafka name: group,
        transactional id) for this deployment: the prefix puts a test rig or a
        staging stack under names of its own, which its principal's ACLs cover."""
        return f"{self.topic_prefix}{name}"

    @property
    def source(self) -> str:
        """The CloudEvent ``source`` of what this service publishes."""
        return f"/frontier-review/{self.service_name}"

    def kafka_options(self) -> dict[str, Any]:
        """Connection options every aiokafka client of this process uses: bootstrap,
        TLS and this process's own SCRAM principal (services/runtime/kafka.py)."""
        return aiokafka_options(self)
