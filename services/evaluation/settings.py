"""Evaluation's settings: the runtime's (prefix FR_) plus its own (prefix FR_EVALUATION_)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.settings import RuntimeSettings
from services.trust.freshness import FreshnessPolicy

PACKAGE = Path(__file__).parent


class EvaluationSettings(RuntimeSettings):
    # Identity (the runtime's names): the consumer groups and the relay's
    # transactional id derive from the service name; replicas and worker
    # processes share it (and the schema).
    service_name: str = "evaluation"
    db_schema: str = "evaluation"
    # Health, readiness and metrics (a worker process on the same host: another port).
    http_port: int | None = 8302

    # Suites and evidence
    evaluation_suite_registry: Path = PACKAGE / "suites" / "registry.yaml"
    evaluation_inspect_log_dir: Path = Path(".local/inspect-logs")
    # Where each Inspect process gets a fresh working directory of its own (its home,
    # temp dir and log staging); the worker moves the finished log into the log dir.
    evaluation_run_dir: Path = Path(".local/inspect-runs")

    # Credential references resolve to $<secret_env_prefix><REF upper, non-alnum -> _>
    # (read once at start and removed from the environment) or to the file
    # <secrets_dir>/<ref> (e.g. a mounted Kubernetes secret).
    evaluation_secrets_dir: Path = Path(".local/secrets")
    evaluation_secret_env_prefix: str = "FR_SECRET_"

    # Worker
    evaluation_worker_enabled: bool = True  # run a worker inside the service process too
    evaluation_worker_concurrency: int = 2  # jobs at once (one Inspect process each)
    evaluation_lease_s: float = 30.0
    evaluation_heartbeat_s: float = 5.0
    evaluation_job_poll_interval_s: float = 1.0
    evaluation_retry_backoff_s: float = 10.0
    evaluation_retry_backoff_max_s: float = 600.0
    evaluation_release_grace_s: float = 5.0

    # Inspect processes inherit only a few harmless variables (runner.CHILD_ENV_NAMES);
    # these names are passed too, e.g. for the agency's own suites (never a secret's).
    evaluation_inspect_env_passthrough: list[str] = []
    # TCP ports an Inspect process may connect to besides its endpoint's (e.g. a proxy).
    evaluation_child_connect_ports: list[int] = []

    # Inspect / model API
    evaluation_model_max_retries: int = 2  # Inspect's retries of one call (the SDK's are off)
    evaluation_model_request_timeout_s: int = 120
    # Model endpoints must be public https hosts (checked before every run and at every
    # connection the Inspect process opens; redirects are refused); host:port pairs
    # listed here are exempt and may use http (local development: the demo lab server,
    # "127.0.0.1:8900"). JSON list: FR_EVALUATION_ENDPOINT_ALLOWLIST='["127.0.0.1:8900"]'.
    evaluation_endpoint_allowlist: list[str] = []

    # External findings (services/trust/freshness.py): signature.issued_at may precede the
    # broker's append time by max_age and follow it by max_future; the clocks of broker
    # and replicas agree within clock_tolerance; JSON, e.g.
    # FR_EVALUATION_FRESHNESS='{"max_age": 300, "max_future": 60, "clock_tolerance": 300}'.
    evaluation_freshness: FreshnessPolicy = FreshnessPolicy()
    # Spent nonces are purged once no acceptable record can carry them
    # (FreshnessPolicy.nonce_retention after their issued_at); how often to look.
    evaluation_nonce_purge_interval_s: float = 3600.0
