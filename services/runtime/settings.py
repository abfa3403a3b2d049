"""Settings from environment variables (prefix ``FR_``), defaults for local dev.

The defaults match deploy/stack.sh, so a service started on a developer's
machine finds the local Kafka and PostgreSQL without any configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FR_", extra="ignore")

    service_name: str = "frontier-review"
    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql://frontier:frontier@127.0.0.1:15432/frontier_review"
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Consumers: a fetched batch is applied with one Postgres commit per run of
    # good records (see consumer.py); 1 means a commit per record.
    consumer_batch_size: int = 200
    max_message_bytes: int = 1_000_000
    handler_max_attempts: int = 3
    handler_retry_backoff_s: float = 0.2
    graceful_timeout_s: float = 15.0

    # Outbox relay
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0

    # Housekeeping by the elected relay: inbox rows outlive the longest topic
    # retention (90 days, contracts/registry.py), so no redelivery applies twice.
    prune_interval_s: float = 600.0
    outbox_keep_days: int = 7
    inbox_keep_days: int = 100

    # Telemetry: "jsonl" appends finished spans to otel_file, "otlp" sends them to
    # otel_endpoint (Jaeger, an OTel collector), "none" only propagates context.
    otel_exporter: Literal["none", "otlp", "jsonl", "console"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4318"
    otel_file: Path = Path(".local/traces.jsonl")
    log_level: str = "INFO"
    log_json: bool = True
