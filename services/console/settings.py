"""The console's settings: the runtime's (prefix FR_) plus its own (prefix FR_CONSOLE_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.console.stuck import Thresholds
from services.runtime.deadletter import DLQ_MAX_MESSAGE_BYTES
from services.runtime.settings import RuntimeSettings


class ConsoleSettings(RuntimeSettings):
    # Identity (the runtime's names): consumer groups console.<topic>.
    service_name: str = "console"
    db_schema: str = "console"
    # The web console, on the loopback interface unless FR_HTTP_HOST says otherwise.
    http_port: int | None = 8305
    # A dead letter may be twice a record's size (the DLQs take 2 MiB records): the
    # console reads every one whole rather than refusing it as oversized.
    max_message_bytes: int = DLQ_MAX_MESSAGE_BYTES

    # Who may see the console: a file of tokens, one per line ('#' comments), presented
    # as a bearer token or as the password of HTTP basic auth (any user name). Without
    # it every page but /healthz answers 401: the console shows restricted data.
    console_tokens_file: Path | None = None
    # The trace file the waterfall reads (the services' FR_OTEL_FILE), and the services
    # whose own spans it leaves out (the console's consuming is not the submission's).
    console_traces_file: Path = Path(".local/traces.jsonl")
    console_hide_services: list[str] = ["console"]
    # Rows on a list page.
    console_page_size: int = 200

    # When a stage counts as stuck (``status`` and the pages flag it).
    console_evaluation_start_s: float = 120.0  # accepted -> EvaluationStarted
    console_suite_grace_s: float = 300.0  # beyond a suite's timeout x attempts
    console_assessment_s: float = 120.0  # EvaluationCompleted -> a RiskAssessed
    console_window_close_s: float = 300.0  # deadline -> ReviewWindowClosed
    console_conclusion_s: float = 600.0  # ReviewWindowClosed -> ReviewConcluded
    # A policy version's deadline plus this is when access's overdue check has surely
    # run (access_overdue_grace_s and some): until then "checking", then acknowledged.
    console_compliance_grace_s: float = 300.0

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            evaluation_start=timedelta(seconds=self.console_evaluation_start_s),
            suite_grace=timedelta(seconds=self.console_suite_grace_s),
            assessment=timedelta(seconds=self.console_assessment_s),
            window_close=timedelta(seconds=self.console_window_close_s),
            conclusion=timedelta(seconds=self.console_conclusion_s),
        )

    @property
    def compliance_grace(self) -> timedelta:
        return timedelta(seconds=self.console_compliance_grace_s)
