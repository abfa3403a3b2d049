"""The worker loop: claim due jobs, run them with Inspect, record what came of them.

A worker holds at most ``evaluation_worker_concurrency`` leases at once. Each
running job renews its lease every ``evaluation_heartbeat_s``; when renewal
fails (the lease expired and another worker took the job, or the window closed
/ the submission was withdrawn) the attempt is killed and its result, if any,
discarded. The heartbeat goes on while the result is recorded, and a transient
database error while recording (a restart, a killed session) retries the record
instead of losing the result: it is lost only with the lease. Jobs of workers
that died (SIGKILL, lost host) are taken back once their lease expires; that
attempt counts as failed, so the job is retried with backoff or fails for good.

Before an Inspect process starts, the lab's endpoint is checked against the
endpoint policy again (``check_endpoint``: a public https host, or allowlisted);
a refused endpoint fails the suite at once (``endpoint_not_allowed``), before its
secret is even looked up. The Inspect process checks again at every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from contracts.events.evaluation import FailureKind
from services.evaluation import isolation, workflow
from services.evaluation import repository as repo
from services.evaluation.credentials import (
    CredentialNotOwned,
    CredentialUnavailable,
    resolve_credential,
)
from services.evaluation.findings import log_file
from services.evaluation.jobs import (
    RetryPolicy,
    deadline_passed,
    endpoint_not_allowed,
    inspect_failure,
)
from services.evaluation.model import ClaimedJob, Failure, Lease
from services.evaluation.runner import Runner
from services.evaluation.runs import RunRequest, RunResult
from services.evaluation.settings import EvaluationSettings
from services.runtime import TRANSIENT_ERRORS, Clock
from services.runtime.notify import Wakeup, listening
from services.runtime.outbox import publishing
from services.runtime.telemetry import continue_trace
from services.trust.endpoints import EndpointPolicy, Resolver, check_endpoint, system_resolver

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)

RECORD_RETRY_MAX_S = 5.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        *,
        pool: Callable[[], Pool],
        settings: EvaluationSettings,
        clock: Clock,
        runner: Runner,
        secrets: Mapping[str, str],
        worker_id: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        """``resolver`` answers the endpoint check's DNS lookups (tests give a fixed one)."""
        self.pool = pool
        self.settings = settings
        # A bad allowlist entry stops the worker at start, not at the first job.
        self.endpoints = EndpointPolicy.from_entries(settings.evaluation_endpoint_allowlist)
        self.resolver = resolver
        self.clock = clock
        self.runner = runner
        self.secrets = secrets  # $<prefix>* secrets, taken from the environment at start
        self.worker_id = worker_id or new_worker_id()
        self.policy = RetryPolicy(
            settings.evaluation_retry_backoff_s, settings.evaluation_retry_backoff_max_s
        )
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.claimed = 0
        self._wakeup: Wakeup | None = None

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until cancelled; then give the running jobs back."""
        # No process this one starts, nor any of its uid, may read its memory.
        isolation.make_non_dumpable()
        channel = repo.jobs_channel(self.settings.db_schema)
        log.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        try:
            async with listening(self.pool(), channel) as wakeup:
                self._wakeup = wakeup
                while True:
                    try:
                        await self._reclaim_expired()
                        await self._fill()
                    except TRANSIENT_ERRORS as exc:
                        # The database hiccuped: keep the running jobs, try again shortly.
                        log.warning(
                            "worker %s: claiming failed (%r); retrying", self.worker_id, exc
                        )
                    except Exception:
                        # Not the infrastructure: loud, but the running jobs go on.
                        log.exception("worker %s: claiming failed; retrying", self.worker_id)
                    await wakeup.wait(self.settings.evaluation_job_poll_interval_s)
        finally:
            await self._stop_running()

    @property
    def concurrency(self) -> int:
        return max(1, self.settings.evaluation_worker_concurrency)

    def _transaction(self, conn: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        return publishing(conn, self.settings, self.clock)

    async def _fill(self) -> None:
        free = self.concurrency - len(self.running)
        if free <= 0:
            return
        async with self.pool().acquire() as conn, conn.transaction():
            claimed = await repo.claim_jobs(
                conn, self.worker_id, free, self.settings.evaluation_lease_s, self.clock.now()
            )
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
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended in an error", task.get_name(), exc_info=task.exception())
        if self._wakeup is not None:
            self._wakeup.set()  # a slot is free

    async def _reclaim_expired(self) -> None:
        async with self.pool().acquire() as conn:
            expired = await repo.expired_jobs(conn, self.clock.now())
        for job_id, submission_id in expired:
            async with self.pool().acquire() as conn, self._transaction(conn) as ctx:
                if await workflow.reclaim_expired(ctx, job_id, submission_id, self.policy):
                    log.warning("job %s: lease expired, its worker is gone", job_id)

    async def _stop_running(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one job ---------------------------------------------------------------------

    async def _execute(self, job: ClaimedJob) -> None:
        with (
            continue_trace(job.traceparent),
            self.tracer.start_as_current_span(
                f"evaluation job {job.suite_id}",
                attributes={
                    "frontier_review.submission_id": str(job.submission_id),
                    "frontier_review.suite": f"{job.suite_id}@{job.suite_version}",
                    "frontier_review.attempt": job.attempt,
                },
            ),
        ):
            await self._attempt_and_record(job)

    async def _attempt_and_record(self, job: ClaimedJob) -> None:
        lease = job.lease
        attempt = asyncio.create_task(self._attempt(job))
        beat = asyncio.create_task(self._heartbeat(lease, attempt))
        try:
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
            # The heartbeat goes on: a record that has to wait for the database keeps
            # the lease, so nobody else re-runs the job meanwhile.
            await self._record(job, outcome)
        finally:
            beat.cancel()

    async def _attempt(self, job: ClaimedJob) -> RunResult | Failure:
        refusal = await check_endpoint(job.endpoint, self.endpoints, resolve=self.resolver)
        if refusal is not None:  # never retried; the secret is not even looked up
            return endpoint_not_allowed(refusal.detail, at_connection=False)
        try:
            secret = resolve_credential(
                job.credential_ref,
                lab_id=job.lab_id,
                secrets_dir=self.settings.evaluation_secrets_dir,
                env_prefix=self.settings.evaluation_secret_env_prefix,
                environ=self.secrets,
            )
        except CredentialNotOwned as exc:  # another lab's secret: never read, never retried
            return Failure(FailureKind.CREDENTIAL_NOT_OWNED, str(exc))
        except CredentialUnavailable as exc:
            return Failure(FailureKind.CREDENTIAL_UNAVAILABLE, str(exc), exc.detail)
        remaining = (job.deadline - self.clock.now()).total_seconds()
        timeout = min(float(job.timeout_seconds), remaining)
        if timeout <= 0:
            return deadline_passed()
        request = RunRequest(
            task=job.task_ref,
            base_url=job.endpoint,
            api_model=job.api_model,
            api_key=secret,
            log_file=log_file(self.settings.evaluation_inspect_log_dir, job.context).absolute(),
            max_retries=self.settings.evaluation_model_max_retries,
            request_timeout_s=self.settings.evaluation_model_request_timeout_s,
            endpoint_allowlist=self.settings.evaluation_endpoint_allowlist,
        )
        run = await self.runner.run(request, timeout)
        if isinstance(run, Failure):
            return run
        if run.status != "success":
            if run.endpoint_refusal is not None:  # the guard refused it: what Inspect saw
                return endpoint_not_allowed(run.endpoint_refusal, at_connection=True)
            return inspect_failure(run.error or f"the Inspect run ended with status {run.status}")
        return run

    async def _heartbeat(self, lease: Lease, attempt: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.settings.evaluation_heartbeat_s)
            try:
                async with self.pool().acquire() as conn:
                    held = await repo.heartbeat(
                        conn, lease, self.settings.evaluation_lease_s, self.clock.now()
                    )
            except Exception:
                log.warning("job %s: heartbeat failed; will retry", lease.job_id, exc_info=True)
                continue
            if not held:
                attempt.cancel()
                return

    async def _record(self, job: ClaimedJob, outcome: RunResult | Failure) -> None:
        """Record the attempt's outcome, retrying transient database errors until it is
        recorded or the lease is found lost."""
        if isinstance(outcome, Failure):
            # The detail may quote the sample or the model's reply: the log only.
            log.warning(
                "job %s %s@%s attempt %d failed: %s: %s%s",
                job.job_id,
                job.suite_id,
                job.suite_version,
                job.attempt,
                outcome.kind.value,
                outcome.message,
                f"\n{outcome.detail}" if outcome.detail else "",
            )
        pause = 0.1
        while True:
            try:
                kept = await self._record_once(job, outcome)
                break
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "job %s: recording the result failed (%r); retrying, the lease is kept",
                    job.job_id,
                    exc,
                )
                await asyncio.sleep(pause)
                pause = min(RECORD_RETRY_MAX_S, pause * 2)
        log.info(
            "job %s %s@%s attempt %d %s%s",
            job.job_id,
            job.suite_id,
            job.suite_version,
            job.attempt,
            "succeeded" if isinstance(outcome, RunResult) else f"failed ({outcome.kind.value})",
            "" if kept else " (discarded: lease lost)",
        )

    async def _record_once(self, job: ClaimedJob, outcome: RunResult | Failure) -> bool:
        async with self.pool().acquire() as conn, self._transaction(conn) as ctx:
            if isinstance(outcome, Failure):
                return await workflow.record_failure(ctx, job.lease, outcome, self.policy)
            return await workflow.record_success(ctx, job.lease, job.context, outcome, self.policy)

    async def _record_lost(self, lease: Lease) -> None:
        async with self.pool().acquire() as conn:
            await repo.end_attempt(conn, lease.token, "lease_lost", self.clock.now())

    async def _release(self, lease: Lease) -> None:
        try:
            async with asyncio.timeout(self.settings.evaluation_release_grace_s):
                async with self.pool().acquire() as conn, conn.transaction():
                    now = self.clock.now()
                    await repo.end_attempt(conn, lease.token, "released", now)
                    await repo.release_job(conn, lease, now)
        except Exception:
            log.warning("job %s: could not release; its lease will expire", lease.job_id)
