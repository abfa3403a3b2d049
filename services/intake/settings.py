"""Intake's settings: the runtime's (prefix FR_) plus its own (prefix FR_INTAKE_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.runtime.settings import RuntimeSettings
from services.trust.freshness import FreshnessPolicy

DEFAULT_CRITERIA = Path(__file__).parent / "criteria.yaml"
SECONDS_PER_DAY = 86_400.0


class IntakeSettings(RuntimeSettings):
    # Identity (the runtime's names): the consumer groups and the relay's
    # transactional id derive from the service name; replicas share it.
    service_name: str = "intake"
    db_schema: str = "intake"
    # Status HTTP endpoint (GET /submissions/<id>) beside /healthz, /readyz, /metrics.
    http_port: int | None = 8301

    # Trust (services/trust/freshness.py): signature.issued_at may precede the broker's
    # append time by max_age and follow it by max_future; the clocks of broker and
    # replicas agree within clock_tolerance.
    intake_signature_max_age_s: float = 300.0
    intake_signature_max_future_s: float = 60.0
    intake_clock_tolerance_s: float = 300.0
    # Evaluation endpoints must be public https hosts; host:port pairs listed here are
    # exempt (local development: the demo lab server, "127.0.0.1:8900").
    intake_endpoint_allowlist: list[str] = []
    intake_criteria_file: Path = DEFAULT_CRITERIA

    # Input that may not speak for a submission (unauthenticated, or about another
    # lab's id) is counted per claimed sender and hour, and answered at most this often.
    intake_refusals_answered_per_hour: int = 100
    # A duplicate filing (the same body again, newly signed) is answered with a copy of
    # the original decision at most this often per submission and hour; beyond it,
    # duplicates are only counted (submissions.duplicates).
    intake_duplicates_answered_per_hour: int = 10
    # Retention: a submission's history, and the hourly refusal counts; rows past it
    # are deleted at start and then every intake_prune_every_s (by the injected clock).
    intake_history_keep_days: int = 400
    intake_refusal_counts_keep_days: int = 90
    intake_prune_every_s: float = 3600.0

    # The review-window clock. A "day" lasts this many seconds: 86400 in production,
    # a few seconds in tests and the demo, so a 30-day window can pass in a minute.
    intake_seconds_per_day: float = SECONDS_PER_DAY

    def freshness(self) -> FreshnessPolicy:
        return FreshnessPolicy(
            max_age=timedelta(seconds=self.intake_signature_max_age_s),
            max_future=timedelta(seconds=self.intake_signature_max_future_s),
            clock_tolerance=timedelta(seconds=self.intake_clock_tolerance_s),
        )
