"""Intake's settings: the runtime's (prefix FR_) plus its own (prefix FR_INTAKE_)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.settings import RuntimeSettings

DEFAULT_CRITERIA = Path(__file__).parent / "criteria.yaml"
SECONDS_PER_DAY = 86_400.0


class IntakeSettings(RuntimeSettings):
    # Identity (the runtime's names): the consumer groups and the relay's
    # transactional id derive from the service name; replicas share it.
    service_name: str = "intake"
    db_schema: str = "intake"
    # Status HTTP endpoint (GET /submissions/<id>, GET /healthz), served in-process.
    http_port: int | None = 8301

    # Trust: how far issued_at may be from intake's clock, either way (also how long
    # a nonce must be remembered: older inputs are refused as stale anyway).
    intake_max_clock_skew_s: float = 300.0
    # Local development only: accept http:// evaluation endpoints (the demo lab server).
    intake_allow_http_endpoints: bool = False
    intake_criteria_file: Path = DEFAULT_CRITERIA

    # The review-window clock. A "day" lasts this many seconds: 86400 in production,
    # a few seconds in tests and the demo, so a 30-day window can pass in a minute.
    intake_seconds_per_day: float = SECONDS_PER_DAY
