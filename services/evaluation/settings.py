"""Settings of the evaluation service and its workers (environment, prefix ``FR_``)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.settings import RuntimeSettings

PACKAGE = Path(__file__).parent


class EvaluationSettings(RuntimeSettings):
    db_schema: str = "evaluation"  # the Postgres schema the service owns

    # Topics (overridable so tests can run against topics of their own).
    intake_topic: str = "intake.events"
    external_findings_topic: str = "evaluators.findings"
    evaluation_topic: str = "evaluation.events"

    # Suites and evidence
    suite_registry: Path = PACKAGE / "suites" / "registry.yaml"
    inspect_log_dir: Path = Path(".local/inspect-logs")

    # Credential references resolve to $<secret_env_prefix><REF upper, non-alnum -> _>
    # or to the file <secrets_dir>/<ref> (e.g. a mounted Kubernetes secret).
    secrets_dir: Path = Path(".local/secrets")
    secret_env_prefix: str = "FR_SECRET_"

    # Worker
    worker_enabled: bool = True  # run a worker inside the service process too
    worker_concurrency: int = 2  # jobs one worker runs at once (one Inspect process each)
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    job_poll_interval_s: float = 1.0
    retry_backoff_s: float = 10.0
    retry_backoff_max_s: float = 600.0
    release_grace_s: float = 5.0

    # Inspect / model API
    model_max_retries: int = 2  # Inspect's retries of one model call (the SDK's own are off)
    model_request_timeout_s: int = 120
    # Inspect processes inherit only a few harmless variables (runner.CHILD_ENV_NAMES); these
    # names are passed too, e.g. for the agency's own suites (never $<secret_env_prefix>*).
    inspect_env_passthrough: list[str] = []

    # External findings: accepted clock skew of signature.issued_at
    signature_max_age_s: float = 900.0
    signature_max_future_s: float = 60.0
    # Nonces of accepted signatures are kept until no signature that used them can be fresh.
    nonce_purge_interval_s: float = 300.0
