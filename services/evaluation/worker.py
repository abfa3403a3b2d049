"""The worker loop: claim due jobs, run them with Inspect, record what came of them.

A worker holds at most ``worker_concurrency`` leases at once. Each running job
renews its lease every ``heartbeat_s``; when renewal fails (the lease expired and
another worker took the job, or the window closed / the submission was withdrawn)
the attempt is killed and its result, if any, discarded. Jobs of workers that
died (SIGKILL, lost host) are taken back once their lease expires; that attempt
counts as failed, so the job is retried with backoff or fails for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from opentelemetry import trace

from contracts.events.evaluation import FailureKind
from services.evaluation import repository as repo
from services.evaluation import workflow
from services.evaluation.credentials import (
    CredentialNotOwned,
    CredentialUnavailable,
    resolve_credential,
)
from services.evaluation.findings import JobContext, log_file
from services.evaluation.jobs import RetryPolicy, classify_failure
from services.evaluation.runner import AttemptTimeout, Runner
from services.evaluation.runs import RunRequest, RunResult
from services.evaluation.settings import EvaluationSettings
from services.runtime.outbox import Outbox
from services.runtime.telemetry import attach_trace, detach_trace

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failed:
    failure: FailureKind
    error: str


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        *,
        pool: Callable[[], Pool],
        settings: EvaluationSettings,
        runner: Runner,
        source: str,
        schema: str,
        worker_id: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.runner = runner
        self.source = source
        self.schema = schema
        self.worker_id = worker_id or new_worker_id()
        self.policy = RetryPolicy(settings.retry_backoff_s, settings.retry_backoff_max_s)
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.running: dict[UUID, asyncio.Task[None]] = {}
        self.claimed = 0
        self._wake = asyncio.Event()

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until cancelled; then give the running jobs back."""
        listener = await self.pool().acquire()
        channel = repo.jobs_channel(self.schema)
        await listener.add_listener(channel, self._notified)
        log.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        try:
            while True:
                try:
                    await self._reclaim_expired()
                    await self._fill()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    # The database hiccuped: keep the running jobs, try again shortly.
                    log.warning(
                        "worker %s: claiming failed; retrying", self.worker_id, exc_info=True
                    )
                await self._idle()
        finally:
            await self._stop_running()
            with contextlib.suppress(Exception):
                await listener.remove_listener(channel, self._notified)
            await self.pool().release(listener)

    @property
    def concurrency(self) -> int:
        return max(1, self.settings.worker_concurrency)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_interval_s)
        self._wake.clear()

    async def _fill(self) -> None:
        free = self.concurrency - len(self.running)
        if free <= 0:
            return
        async with self.pool().acquire() as conn, conn.transaction():
            claimed = await repo.claim_jobs(conn, self.worker_id, free, self.settings.lease_s)
        for job in claimed:
            self.claimed += 1
            log.info(
                "claimed %s@%s for %s (attempt %d)",
                job.suite_id,
                job.suite_version,
                job.submission_id,
                job.attempt,
            )
            task = asyncio.create_task(self._execute(job), name=f"job:{job.job_id}")
            self.running[job.job_id] = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running = {job_id: t for job_id, t in self.running.items() if t is not task}
        self._wake.set()  # a slot is free

    async def _reclaim_expired(self) -> None:
        async with self.pool().acquire() as conn:
            expired = await repo.expired_jobs(conn)
        for job_id, submission_id in expired:
            async with self.pool().acquire() as conn, conn.transaction():
                if await workflow.reclaim_expired(
                    conn,
                    Outbox(conn, self.source),
                    self.settings.evaluation_topic,
                    job_id,
                    submission_id,
                    self.policy,
                    datetime.now(UTC),
                ):
                    log.warning("job %s: lease expired, its worker is gone", job_id)

    async def _stop_running(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one job ---------------------------------------------------------------------

    async def _execute(self, job: repo.ClaimedJob) -> None:
        lease = workflow.Lease(job.job_id, job.submission_id, job.attempt, job.lease_token)
        token = attach_trace({"traceparent": job.traceparent})
        try:
            with self.tracer.start_as_current_span(
                f"evaluation job {job.suite_id}",
                attributes={
                    "frontier_review.submission_id": str(job.submission_id),
                    "frontier_review.suite": f"{job.suite_id}@{job.suite_version}",
                    "frontier_review.attempt": job.attempt,
                },
            ):
                await self._attempt_and_record(job, lease)
        finally:
            detach_trace(token)

    async def _attempt_and_record(self, job: repo.ClaimedJob, lease: workflow.Lease) -> None:
        attempt = asyncio.create_task(self._attempt(job))
        beat = asyncio.create_task(self._heartbeat(lease, attempt))
        try:
            outcome = await attempt
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                await self._release(lease)  # shutdown: give the job back
                raise
            log.info("job %s: lease lost or evaluation stopped; attempt killed", job.job_id)
            await self._record_lost(lease)
            return
        finally:
            beat.cancel()
        await self._record(job, lease, outcome)

    async def _attempt(self, job: repo.ClaimedJob) -> RunResult | Failed:
        try:
            secret = resolve_credential(
                job.credential_ref,
                lab_id=job.lab_id,
                secrets_dir=self.settings.secrets_dir,
                env_prefix=self.settings.secret_env_prefix,
            )
        except CredentialNotOwned as exc:  # another lab's secret: never read, never retried
            return Failed(FailureKind.CREDENTIAL_NOT_OWNED, str(exc))
        except CredentialUnavailable as exc:
            return Failed(FailureKind.CREDENTIAL_UNAVAILABLE, str(exc))
        remaining = (job.deadline - datetime.now(UTC)).total_seconds()
        timeout = min(float(job.timeout_seconds), remaining)
        if timeout <= 0:
            return Failed(FailureKind.TIMEOUT, "the review window deadline has passed")
        request = RunRequest(
            task=job.task_ref,
            base_url=job.endpoint,
            api_model=job.api_model,
            api_key=secret,
            log_file=log_file(self.settings.inspect_log_dir, context(job)).absolute(),
            max_retries=self.settings.model_max_retries,
            request_timeout_s=self.settings.model_request_timeout_s,
        )
        try:
            run = await self.runner.run(request, timeout)
        except AttemptTimeout as exc:
            return Failed(FailureKind.TIMEOUT, str(exc))
        except OSError as exc:
            return Failed(FailureKind.ERROR, f"could not start the Inspect run: {exc}")
        if run.status != "success":
            error = run.error or f"the Inspect run ended with status {run.status}"
            return Failed(classify_failure(error), error)
        return run

    async def _heartbeat(self, lease: workflow.Lease, attempt: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                async with self.pool().acquire() as conn:
                    held = await repo.heartbeat(
                        conn, lease.job_id, lease.token, self.settings.lease_s
                    )
            except Exception:
                log.warning("job %s: heartbeat failed; will retry", lease.job_id, exc_info=True)
                continue
            if not held:
                attempt.cancel()
                return

    async def _record(
        self, job: repo.ClaimedJob, lease: workflow.Lease, outcome: RunResult | Failed
    ) -> None:
        now = datetime.now(UTC)
        topic = self.settings.evaluation_topic
        async with self.pool().acquire() as conn, conn.transaction():
            outbox = Outbox(conn, self.source)
            if isinstance(outcome, Failed):
                kept = await workflow.record_failure(
                    conn, outbox, topic, lease, outcome.failure, outcome.error, self.policy, now
                )
                what = f"failed ({outcome.failure}: {outcome.error[:200]})"
            else:
                kept = await workflow.record_success(
                    conn, outbox, topic, lease, context(job), outcome, self.policy, now
                )
                what = "succeeded"
        log.info(
            "job %s %s@%s attempt %d %s%s",
            job.job_id,
            job.suite_id,
            job.suite_version,
            job.attempt,
            what,
            "" if kept else " (discarded: lease lost)",
        )

    async def _record_lost(self, lease: workflow.Lease) -> None:
        async with self.pool().acquire() as conn:
            await repo.end_attempt(conn, lease.token, "lease_lost")

    async def _release(self, lease: workflow.Lease) -> None:
        try:
            async with asyncio.timeout(self.settings.release_grace_s):
                async with self.pool().acquire() as conn, conn.transaction():
                    await repo.end_attempt(conn, lease.token, "released")
                    await repo.release_job(conn, lease.job_id, lease.token)
        except Exception:
            log.warning("job %s: could not release; its lease will expire", lease.job_id)


def context(job: repo.ClaimedJob) -> JobContext:
    return JobContext(
        job_id=job.job_id,
        submission_id=job.submission_id,
        model_id=job.model_id,
        suite_id=job.suite_id,
        suite_version=job.suite_version,
        domain=job.domain,
        capability=job.capability,
        attempt=job.attempt,
    )
