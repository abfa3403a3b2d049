"""Access's settings: the runtime's (prefix FR_) plus its own (prefix FR_ACCESS_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.access.country_groups import DEFAULT_FILE
from services.runtime.settings import RuntimeSettings


class AccessSettings(RuntimeSettings):
    # Identity (the runtime's names): consumer groups access.<topic>, relay identity.
    service_name: str = "access"
    db_schema: str = "access"
    # The agency API (impact preview) beside /healthz, /readyz, /metrics, in-process.
    http_port: int | None = 8304

    # The agency's country-group table the orders are expanded with.
    access_country_groups_file: Path = DEFAULT_FILE
    # A lab acknowledges each policy version within this many seconds of publication.
    access_acknowledge_within_s: float = 86_400.0
    # The overdue check runs this long after a deadline, so that an acknowledgement the
    # broker appended in time but this service has not read yet still counts.
    access_overdue_grace_s: float = 60.0
    # How far enforced_at may lie outside [published_at, broker time] (clock skew).
    access_enforced_at_skew_s: float = 300.0

    # Acknowledgements that did not authenticate (or were not decodable) are counted per
    # claimed lab and hour (the trust library's trust_refusal_counts), and answered at
    # most this often per claimed lab; the counts are kept this many days.
    access_refusals_answered_per_hour: int = 100
    access_refusal_counts_keep_days: int = 90

    # Agency API callers: a file of bearer tokens, one per line ('#' comments). Without
    # it the API refuses every call (401); the runtime's /healthz etc. stay open.
    access_api_tokens_file: Path | None = None
    # Largest impact-preview upload (the sample is spooled to disk, never held in memory).
    access_preview_max_bytes: int = 512 * 1024 * 1024
    # At most this many allowed->denied principals are listed in an API preview report.
    access_preview_max_changed: int = 1000

    @property
    def acknowledge_within(self) -> timedelta:
        return timedelta(seconds=self.access_acknowledge_within_s)

    @property
    def overdue_grace(self) -> timedelta:
        return timedelta(seconds=self.access_overdue_grace_s)

    @property
    def enforced_at_skew(self) -> timedelta:
        return timedelta(seconds=self.access_enforced_at_skew_s)
