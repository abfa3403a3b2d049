"""Evaluation's settings: the runtime's (prefix FR_) plus its own (prefix FR_EVALUATION_)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.settings import RuntimeSettings

PACKAGE = Path(__file__).parent


class EvaluationSettings(RuntimeSettings):
    # Identity (the runtime's names): the consumer groups and the relay's
    # transactional id derive from the service name; replicas and worker
    # processes share it (and the schema).
    service_name: str = "evaluation"
    db_schema: str = "evaluation"

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

    # External findings: accepted clock skew of signature.issued_at
    evaluation_signature_max_age_s: float = 900.0
    evaluation_signature_max_future_s: float = 60.0
    # Nonces of accepted signatures are kept until no signature that used them can be fresh.
    evaluation_nonce_purge_interval_s: float = 300.0
