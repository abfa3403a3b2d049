"""Suites that time out or error are retried with backoff, then fail with EvaluationFailed;
what a failure says in public never quotes the sample, the prompt or a response."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg

from contracts.events import EvaluationCompleted, EvaluationFailed, FindingRecorded
from contracts.events.evaluation import EvaluationEnd, FailureKind, SuiteStatus
from services.evaluation.settings import EvaluationSettings
from services.evaluation.suites import cyber
from services.evaluation.suites.common import SYSTEM_PROMPT
from tests.contracts.examples import LAB_ID
from tests.evaluation import tasks
from tests.evaluation.rig import DEMO_API_KEY, EvalRig, endpoint_of, filing, suite_entry
from tests.kit import TopicWatcher

MAX_ATTEMPTS = 2
# What the runs had in hand: the prompts and questions, and what the demo endpoint's
# error bodies say ("scripted failure; the request was: ...").
EVALUATION_ITEMS = [
    SYSTEM_PROMPT,
    *(str(sample.input) for sample in cyber.SAMPLES),
    tasks.SYSTEM_PROMPT,
    tasks.SAMPLE_TEXT,
    "scripted failure",
    "the request was",
    "SAMPLE-QUESTION",
    "SYSTEM-PROMPT",
]


def assert_no_evaluation_items(watcher: TopicWatcher, *more: str) -> None:
    """No record on the topic, byte for byte, carries a sample, a prompt, a response
    body, the secret or anything else of ``more``."""
    for record in watcher.records:
        value = (record.value or b"").decode(errors="replace")
        for item in [*EVALUATION_ITEMS, DEMO_API_KEY, *more]:
            fragment = item[:40]
            assert fragment not in value, f"{fragment!r} in a published event: {value[:300]}"


async def test_a_suite_that_times_out_is_retried_then_fails(rig: EvalRig) -> None:
    timeout_s = 3
    limits = {"timeout_seconds": timeout_s, "max_attempts": MAX_ATTEMPTS}
    settings = rig.configure(only={"cyber-ctf-proxy"}, suites=limits)
    stalling = filing(rig.demo_url, "stalling")  # replies after 120 s: every attempt times out
    await rig.start_service(settings)
    await rig.file(stalling)
    await failed_evaluations(rig, settings, {stalling.submission_id: FailureKind.TIMEOUT})
    [timed_out] = rig.events.of(stalling.submission_id, EvaluationFailed)
    assert timed_out.error == f"the attempt exceeded its {timeout_s} s limit"
    for attempt in await attempts_of(rig):
        elapsed = attempt["ended_at"] - attempt["started_at"]
        assert elapsed < timedelta(seconds=timeout_s + 3), "the run was stopped at its limit"
    assert_no_evaluation_items(rig.events)


async def test_suites_that_error_are_retried_then_fail(rig: EvalRig) -> None:
    nobody_home_url = rig.nobody_home_url  # allowed, but nothing listens
    settings = rig.configure(
        only={"cyber-ctf-proxy"},
        suites={"max_attempts": MAX_ATTEMPTS},
        evaluation_endpoint_allowlist=[endpoint_of(rig.demo_url), endpoint_of(nobody_home_url)],
    )
    broken = filing(rig.demo_url, "broken")  # HTTP 500 on every call, quoting the request
    nobody_home = filing(nobody_home_url, "capable")
    no_secret = filing(rig.demo_url, "capable", credential_ref=f"labs/{LAB_ID}/missing-key")
    cases = {
        broken.submission_id: FailureKind.ERROR,
        nobody_home.submission_id: FailureKind.ENDPOINT_UNREACHABLE,
        no_secret.submission_id: FailureKind.CREDENTIAL_UNAVAILABLE,
    }
    await rig.start_service(settings)
    await rig.file(broken, nobody_home, no_secret)
    await failed_evaluations(rig, settings, cases)
    [errored] = rig.events.of(broken.submission_id, EvaluationFailed)
    assert errored.error.startswith("the model endpoint answered HTTP 5xx (InternalServerError)")
    [unreachable] = rig.events.of(nobody_home.submission_id, EvaluationFailed)
    assert "could not be reached" in unreachable.error
    [missing] = rig.events.of(no_secret.submission_id, EvaluationFailed)
    assert f"labs/{LAB_ID}/missing-key" in missing.error
    assert str(settings.evaluation_secrets_dir) not in missing.error, "where the store is"
    assert_no_evaluation_items(rig.events, str(settings.evaluation_secrets_dir))


async def test_no_failure_publishes_the_sample_the_prompt_or_the_response(
    rig: EvalRig,
) -> None:
    """Every way an attempt fails, with the sample, the prompt and an endpoint's reply
    quoting them in hand: a refusal (HTTP 400 quoting the request), an HTTP error quoting
    it, a model call timing out, the Inspect process crashing with them on its stderr,
    and task code writing them into the result. The events carry the failure kind and
    our own words only; the attempt rows too."""
    settings = rig.configure(
        only={"cyber-ctf-proxy"},
        extra_suites=[
            suite_entry("crashing-task", "tests.evaluation.tasks:crashing"),
            suite_entry("garbling-task", "tests.evaluation.tasks:garbling"),
        ],
        suites={"max_attempts": 1, "timeout_seconds": 60},
        evaluation_worker_concurrency=3,
    )
    refused = filing(rig.demo_url, "content-filter")
    erroring = filing(rig.demo_url, "broken")
    submissions = (refused, erroring)
    await rig.start_service(settings)
    await rig.file(*submissions)
    await rig.events.wait(
        lambda: all(rig.events.of(s.submission_id, EvaluationCompleted) for s in submissions),
        timeout=240,
        what="every evaluation to end",
    )
    await rig.events.linger()

    def failures(submission_id: UUID) -> dict[str, EvaluationFailed]:
        return {f.suite_id: f for f in rig.events.of(submission_id, EvaluationFailed)}

    for submission in submissions:
        failed = failures(submission.submission_id)
        crash, garble = failed["crashing-task"], failed["garbling-task"]
        assert (crash.failure, garble.failure) == (FailureKind.ERROR, FailureKind.ERROR)
        assert crash.error == "the Inspect process exited with status 1 without a result"
        assert garble.error == "the Inspect process returned an unreadable result"
    [error] = [
        f
        for f in rig.events.of(erroring.submission_id, EvaluationFailed)
        if f.suite_id == "cyber-ctf-proxy"
    ]
    assert error.error.startswith("the model endpoint answered HTTP 5xx (InternalServerError)")
    # Inspect takes the filter's refusal as the model's answer: scored (0), not failed.
    [refusal] = rig.events.of(refused.submission_id, FindingRecorded)
    assert (refusal.suite_id, refusal.score) == ("cyber-ctf-proxy", 0.0)
    assert_no_evaluation_items(rig.events)
    stored = await rig.fetch("SELECT error FROM job_attempts UNION ALL SELECT last_error FROM jobs")
    for row in stored:
        assert not [i for i in EVALUATION_ITEMS if i[:40] in (row["error"] or "")], row["error"]


async def failed_evaluations(
    rig: EvalRig, settings: EvaluationSettings, cases: dict[UUID, FailureKind]
) -> None:
    """Each submission's one suite failed with its kind after MAX_ATTEMPTS, with backoff."""
    reader = rig.events
    await reader.wait(
        lambda: all(reader.of(sid, EvaluationCompleted) for sid in cases),
        timeout=120,
        what="every evaluation to end",
    )
    await reader.linger()

    for sid, kind in cases.items():
        [failed] = reader.of(sid, EvaluationFailed)
        assert failed.failure is kind, (kind, failed.error)
        assert failed.attempts == MAX_ATTEMPTS
        assert failed.suite_id == "cyber-ctf-proxy"
        assert DEMO_API_KEY not in failed.error
        assert reader.of(sid, FindingRecorded) == []
        [completed] = reader.of(sid, EvaluationCompleted)
        assert completed.ended_by is EvaluationEnd.ALL_SUITES_ENDED
        assert [(s.status, s.attempts) for s in completed.suites] == [
            (SuiteStatus.FAILED, MAX_ATTEMPTS)
        ]
        kinds = [type(e).__name__ for e in reader.of(sid)]
        assert kinds == ["EvaluationStarted", "EvaluationFailed", "EvaluationCompleted"]

    attempts = await attempts_of(rig)
    for sid, kind in cases.items():
        mine = [a for a in attempts if a["submission_id"] == sid]
        assert [(a["attempt"], a["outcome"], a["failure"]) for a in mine] == [
            (1, "failed", kind.value),
            (2, "failed", kind.value),
        ]
        backoff = mine[1]["started_at"] - mine[0]["ended_at"]
        assert backoff >= timedelta(seconds=settings.evaluation_retry_backoff_s), "backed off"


async def attempts_of(rig: EvalRig) -> list[asyncpg.Record]:
    return await rig.fetch(
        """SELECT j.submission_id, a.attempt, a.outcome, a.failure, a.started_at, a.ended_at
           FROM job_attempts a JOIN jobs j USING (job_id)
           ORDER BY a.started_at"""
    )
