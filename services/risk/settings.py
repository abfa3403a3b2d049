"""The risk service's settings: the runtime's (prefix FR_) plus its own (prefix FR_RISK_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.risk.policy import POLICY_DIR, SHIPPED_VERSION
from services.runtime.settings import RuntimeSettings
from services.trust.freshness import FreshnessPolicy

SECONDS_PER_DAY = 86_400.0


class RiskSettings(RuntimeSettings):
    # Identity (the runtime's names): consumer groups <name>.<topic>, the relay's id.
    service_name: str = "risk"
    db_schema: str = "risk"
    # Health, readiness and metrics (the runtime's embedded server).
    http_port: int | None = 8303

    # The thresholds policy: the file <dir>/<version>.yaml, loaded and validated at
    # start. A new policy is a new file with a new version, named here.
    risk_policy_dir: Path = POLICY_DIR
    risk_policy_version: str = SHIPPED_VERSION

    # The service key that signs the audit log's entries and checkpoints (PKCS#8 PEM,
    # Ed25519; `python -m services.risk.cli audit keygen` writes one), and the id its
    # public key is published under. In production it comes from the secret store.
    risk_service_key_file: Path = Path(".local/risk/audit-key.pem")
    risk_service_key_id: str = "risk-audit-1"

    # A signed checkpoint of the audit log's head is published on gov.audit once per
    # interval (a durable timer per interval: exactly one across replicas).
    risk_checkpoint_interval_s: float = 300.0

    # A "day" of the policy's durations (decision deadlines, compliance times, the
    # conclusion's grace) lasts this many seconds: 86400 in production, less in the
    # demo, where intake's review window is scaled the same way.
    risk_seconds_per_day: float = SECONDS_PER_DAY

    # Reviewers' signatures (services/trust/freshness.py): issued_at may precede the
    # broker's append time by max_age and follow it by max_future.
    risk_signature_max_age_s: float = 300.0
    risk_signature_max_future_s: float = 60.0
    risk_nonce_purge_interval_s: float = 3600.0

    @property
    def freshness(self) -> FreshnessPolicy:
        return FreshnessPolicy(
            max_age=timedelta(seconds=self.risk_signature_max_age_s),
            max_future=timedelta(seconds=self.risk_signature_max_future_s),
        )
