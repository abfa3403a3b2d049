"""The evaluation domain without infrastructure: registry, planning, jobs, findings, secrets."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from contracts.events import (
    EvaluationCompleted,
    ExternalFindingSubmitted,
    RejectionReason,
    SubmissionAccepted,
)
from contracts.events.evaluation import EvaluationEnd, FailureKind, SuiteStatus
from services.evaluation.credentials import (
    CredentialNotOwned,
    CredentialUnavailable,
    env_name,
    redact,
    resolve_credential,
)
from services.evaluation.demo_model.server import completion, load_profiles
from services.evaluation.findings import (
    NoScores,
    automated_findings,
    check_observation,
    manual_finding,
    may_record,
    rejection,
)
from services.evaluation.jobs import (
    GiveUp,
    Retry,
    RetryPolicy,
    after_failure,
    child_crashed,
    endpoint_not_allowed,
    evaluation_completed,
    inspect_failure,
    unreadable_result,
)
from services.evaluation.model import (
    Assignment,
    Evaluation,
    InvalidTransition,
    JobContext,
    JobState,
    JobView,
    check_transition,
)
from services.evaluation.planning import (
    NothingToPlan,
    job_id,
    nothing_to_evaluate,
    plan_evaluation,
)
from services.evaluation.runner import child_environment
from services.evaluation.runs import ChildRequest, MetricResult, RunRequest, RunResult, Sandbox
from services.evaluation.suite_registry import SuiteRegistry, load_registry
from services.trust.refusal import Refusal
from services.trust.unverified import Addressing
from services.trust.verifier import Authenticated
from tests.contracts.examples import EVALUATOR_ID, EXAMPLE_KEY_ID, example
from tests.evaluation.rig import SHIPPED_REGISTRY

NOW = datetime.now(UTC)


def test_shipped_registry_has_one_benign_proxy_suite_per_domain() -> None:
    registry = load_registry(SHIPPED_REGISTRY)
    suites = registry.enabled()
    assert sorted(s.domain.value for s in suites) == ["autonomy", "bio", "chem", "cyber", "nuclear"]
    assert all("BENIGN PROXY" in s.description for s in suites)


def test_registry_refuses_duplicates_and_bad_task_refs() -> None:
    suite = load_registry(SHIPPED_REGISTRY).suites[0].model_dump()
    with pytest.raises(ValidationError, match="once"):
        SuiteRegistry.model_validate({"registry_version": "x", "suites": [suite, suite]})
    with pytest.raises(ValidationError):
        SuiteRegistry.model_validate(
            {"registry_version": "x", "suites": [suite | {"task": "not a ref"}]}
        )


def test_planning_picks_enabled_suites_the_model_can_take() -> None:
    registry = load_registry(SHIPPED_REGISTRY)
    accepted = example(SubmissionAccepted)
    plan = plan_evaluation(accepted, registry)
    assert len(plan.jobs) == 5 and plan.registry_version == registry.registry_version
    assert plan_evaluation(accepted, registry) == plan, "deterministic job ids"
    assert plan.jobs[0].job_id == job_id(accepted.submission_id, plan.jobs[0].suite)
    images_only = accepted.model_copy(
        update={"model": accepted.model.model_copy(update={"modalities": ["image"]})}
    )
    with pytest.raises(NothingToPlan) as nothing:
        plan_evaluation(images_only, registry)
    assert nothing.value.registry_version == registry.registry_version
    assert nothing.value.reason.endswith("modalities: image")


def test_a_model_no_suite_applies_to_gets_a_completed_evaluation_of_no_suites() -> None:
    accepted = example(SubmissionAccepted)
    completed = nothing_to_evaluate(accepted, "no suite for ['image']", NOW)
    assert completed.ended_by is EvaluationEnd.NO_APPLICABLE_SUITES
    assert completed.suites == [] and completed.detail == "no suite for ['image']"
    assert completed.incomplete, "an evaluation of nothing vouches for nothing"
    fields = completed.model_dump() | {"ended_by": EvaluationEnd.WINDOW_CLOSED}
    with pytest.raises(ValidationError, match="no_applicable_suites"):
        EvaluationCompleted.model_validate(fields)  # no suites, yet not for want of suites
    outcome = {
        "suite_id": "s",
        "suite_version": "1",
        "domain": "cyber",
        "status": "completed",
        "attempts": 1,
    }
    with pytest.raises(ValidationError, match="no_applicable_suites"):
        EvaluationCompleted.model_validate(completed.model_dump() | {"suites": [outcome]})


def test_retries_back_off_then_give_up() -> None:
    policy = RetryPolicy(base_s=10, max_s=25)
    assert after_failure(1, 3, policy) == Retry(10)
    assert after_failure(2, 3, policy) == Retry(20)
    assert after_failure(3, 3, policy) == GiveUp()
    assert after_failure(1, 3, policy, FailureKind.CREDENTIAL_UNAVAILABLE) == Retry(10)
    assert after_failure(1, 3, policy, FailureKind.CREDENTIAL_NOT_OWNED) == GiveUp(), (
        "another lab's credential stays another lab's: retrying can't help"
    )
    assert after_failure(1, 3, policy, FailureKind.ENDPOINT_NOT_ALLOWED) == GiveUp(), (
        "a private address or a redirect is refused again on every attempt"
    )
    assert after_failure(1, 3, policy, FailureKind.ENDPOINT_UNREACHABLE) == Retry(10)
    assert policy.delay(5) == 25
    check_transition(JobState.RUNNING, JobState.PENDING)
    with pytest.raises(InvalidTransition):
        check_transition(JobState.COMPLETED, JobState.RUNNING)


def test_completion_needs_every_job_ended() -> None:
    job = JobView(uuid.uuid4(), "s", "1", "cyber", JobState.RUNNING, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition):
        evaluation_completed(uuid.uuid4(), "lab/m@1", EvaluationEnd.ALL_SUITES_ENDED, [job], NOW)
    done = JobView(uuid.uuid4(), "s", "1", "cyber", JobState.INCOMPLETE, 1)  # type: ignore[arg-type]
    event = evaluation_completed(uuid.uuid4(), "lab/m@1", EvaluationEnd.WINDOW_CLOSED, [done], NOW)
    assert event.suites[0].status is SuiteStatus.INCOMPLETE and event.incomplete


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (
            "RetryError(<Future at 0x7f state=finished raised APIConnectionError>)",
            FailureKind.ENDPOINT_UNREACHABLE,
            "the model endpoint could not be reached (APIConnectionError)",
        ),
        (
            "RetryError(<Future at 0x7f state=finished raised InternalServerError>)",
            FailureKind.ERROR,
            "the model endpoint answered HTTP 5xx (InternalServerError)",
        ),
        (
            "BadRequestError: Error code: 400 - {'error': {'message': 'You asked: how to X'}}",
            FailureKind.ERROR,
            "the model endpoint answered HTTP 400 (BadRequestError)",
        ),
        (
            "APITimeoutError: Request timed out. messages=[{'role': 'user', 'content': 'Q'}]",
            FailureKind.TIMEOUT,
            "a call to the model endpoint timed out (APITimeoutError)",
        ),
        (
            "ValueError: could not parse the answer to 'What is the secret recipe?'",
            FailureKind.ERROR,
            "the Inspect run ended in an error",
        ),
    ],
)
def test_an_inspect_error_is_published_in_our_words_only(
    error: str, kind: FailureKind, message: str
) -> None:
    failure = inspect_failure(error)
    assert failure.kind is kind
    assert failure.message == f"{message}; details are in the attempt's Inspect log"
    assert failure.detail == error, "the text itself goes to the log"


def test_a_crashed_or_garbling_inspect_process_is_described_without_its_output() -> None:
    crashed = child_crashed(1, "Traceback ... while handling 'the sample question'")
    assert crashed.message == "the Inspect process exited with status 1 without a result"
    assert "sample question" in crashed.detail
    garbled = unreadable_result("Invalid JSON: input_value=b'the system prompt'")
    assert "prompt" not in garbled.message and "prompt" in garbled.detail


def test_credentials_resolve_from_env_or_file_and_never_escape(tmp_path: Path) -> None:
    (tmp_path / "labs" / "acme").mkdir(parents=True)
    (tmp_path / "labs" / "acme" / "key").write_text("from-file\n")

    def resolve(ref: str, environ: dict[str, str]) -> str:
        secret = resolve_credential(
            ref, lab_id="acme", secrets_dir=tmp_path, env_prefix="FR_SECRET_", environ=environ
        )
        return secret.get_secret_value()

    assert resolve("labs/acme/key", {}) == "from-file"
    env = {env_name("FR_SECRET_", "labs/acme/key"): "from-env"}
    assert env_name("FR_SECRET_", "labs/acme/key") == "FR_SECRET_LABS_ACME_KEY"
    assert resolve("labs/acme/key", env) == "from-env"
    with pytest.raises(CredentialNotOwned):
        resolve("labs/../../etc/passwd", {})
    with pytest.raises(CredentialUnavailable) as missing:
        resolve("labs/acme/other", {})
    assert "from-file" not in str(missing.value) + missing.value.detail
    assert str(tmp_path) not in str(missing.value), "where the store is: the detail only"
    assert redact("key=from-file!", SecretStr("from-file")) == "key=***!"


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers every access."""

    def __init__(self, values: dict[str, str]) -> None:
        self.stored = values
        self.accessed: list[str] = []

    def __getitem__(self, name: str) -> str:
        self.accessed.append(name)
        return self.stored[name]

    def __iter__(self) -> Iterator[str]:
        self.accessed.append("*")
        return iter(self.stored)

    def __len__(self) -> int:
        self.accessed.append("*")
        return len(self.stored)


@pytest.mark.parametrize(
    "ref",
    [
        "labs/acme/eval-api-key",  # another lab's
        "labs/mallory/../acme/eval-api-key",  # ... by a detour
        "labs/mallory/./eval-api-key",
        "labs/mallory//eval-api-key",
        "labs/mallory/",
        "labs/mallory",
        "labs/mallory2/eval-api-key",  # a lab whose id starts like the submitter's
        "mallory/eval-api-key",
        "eval-api-key",
    ],
)
def test_a_credential_ref_outside_the_labs_namespace_is_refused_unread(
    ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for lab in ("acme", "mallory", "mallory2"):
        (tmp_path / "labs" / lab).mkdir(parents=True)
        (tmp_path / "labs" / lab / "eval-api-key").write_text(f"{lab}-secret\n")
    (tmp_path / "eval-api-key").write_text("agency-secret\n")
    environ = RecordingEnviron({env_name("FR_SECRET_", ref): "acme-secret"})
    reads: list[Path] = []
    read_text = Path.read_text

    def recording_read_text(path: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", recording_read_text)

    def resolve(ref: str) -> str:
        secret = resolve_credential(
            ref, lab_id="mallory", secrets_dir=tmp_path, env_prefix="FR_SECRET_", environ=environ
        )
        return secret.get_secret_value()

    with pytest.raises(CredentialNotOwned) as refused:
        resolve(ref)
    assert "labs/mallory/" in str(refused.value) and "acme-secret" not in str(refused.value)
    assert environ.accessed == [] and reads == [], "nothing was looked up"
    assert resolve("labs/mallory/eval-api-key") == "mallory-secret"
    assert environ.accessed and reads, "the recorders record"


def test_colliding_environment_names_do_not_hand_over_another_labs_secret(
    tmp_path: Path,
) -> None:
    # labs/acme/eval-api-key and labs/acme-eval/api-key map to the same variable name.
    variable = env_name("FR_SECRET_", "labs/acme/eval-api-key")
    assert variable == env_name("FR_SECRET_", "labs/acme-eval/api-key")
    environ = {variable: "acme-secret"}

    def resolve(ref: str, lab_id: str) -> str:
        secret = resolve_credential(
            ref, lab_id=lab_id, secrets_dir=tmp_path, env_prefix="FR_SECRET_", environ=environ
        )
        return secret.get_secret_value()

    assert resolve("labs/acme/eval-api-key", "acme") == "acme-secret"
    with pytest.raises(CredentialUnavailable) as missing:
        resolve("labs/acme-eval/api-key", "acme-eval")
    assert "environment is not used" in missing.value.detail
    assert "acme-secret" not in str(missing.value) + missing.value.detail


def test_inspect_processes_inherit_no_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/worker",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "INSPECT_EVAL_MAX_CONNECTIONS": "4",
        "INSPECT_EVAL_MAX_TOKENS": "512",
        "INSPECT_DISPLAY": "rich",
        "INSPECT_LAB_API_KEY": "inspect-key",
        "FR_SECRET_LABS_ACME_EVAL_API_KEY": "acme-secret",
        "fr_secret_labs_other_key": "other-secret",
        "FR_DATABASE_URL": "postgresql://frontier:pw@db/frontier_review",
        "FR_DB_SCHEMA": "evaluation",
        "OPENAI_API_KEY": "sk-agency",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "INSPECT_TELEMETRY_TOKEN": "token",
        "HF_TOKEN": "hf-token",
        "UNRELATED": "x",
    }
    child = child_environment(environ, "FR_SECRET_")
    assert child == {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "INSPECT_EVAL_MAX_CONNECTIONS": "4",
        "INSPECT_EVAL_MAX_TOKENS": "512",
        "INSPECT_DISPLAY": "none",
        "PYTHONUNBUFFERED": "1",
    }
    passed = child_environment(
        environ, "FR_SECRET_", ["HF_TOKEN", "FR_SECRET_LABS_ACME_EVAL_API_KEY"]
    )
    assert passed["HF_TOKEN"] == "hf-token", "an operator may pass a name on purpose"
    assert not any(name.upper().startswith("FR_SECRET_") for name in passed), "never a lab's"
    home = child_environment(environ, "FR_SECRET_", home=Path("/runs/r1"))
    assert (home["HOME"], home["TMPDIR"]) == ("/runs/r1", "/runs/r1/tmp"), "its own directory"


def test_run_request_never_shows_its_secret() -> None:
    run = RunRequest(
        task="m:t",
        base_url="http://x/v1",
        api_model="m",
        api_key=SecretStr("hunter2-secret"),
        log_file=Path("x.eval"),
        max_retries=0,
        request_timeout_s=5,
        endpoint_allowlist=["127.0.0.1:8900"],
    )
    sandbox = Sandbox(hidden=[Path("/secrets")], readable=[], writable=[], connect_ports=[443])
    request = ChildRequest.of(run, Path("logs"), sandbox)
    for shown in (run, request):
        assert "hunter2-secret" not in repr(shown) + shown.model_dump_json()
    sent = json.loads(request.to_stdin())
    assert sent["api_key"] == "hunter2-secret"
    assert sent["endpoint_allowlist"] == ["127.0.0.1:8900"], "the allowlist travels to the child"
    assert sent["hosts"] == {}, "the child resolves through DNS unless a test says otherwise"


def job_context() -> JobContext:
    return JobContext(
        job_id=uuid.uuid4(),
        submission_id=uuid.uuid4(),
        model_id="lab/m@1",
        suite_id="cyber-ctf-proxy",
        suite_version="1.0.0",
        domain="cyber",  # type: ignore[arg-type]
        capability="vulnerability-discovery",
        attempt=1,
    )


def test_findings_are_deterministic_and_only_for_normalised_metrics() -> None:
    job = job_context()
    run = RunResult(
        status="success",
        log_sha256="0" * 64,
        samples_total=3,
        metrics=[
            MetricResult(
                scorer="match", metric="accuracy", value=0.5, stderr=0.2, samples_scored=3
            ),
            MetricResult(scorer="match", metric="mean_tokens", value=42.0),
        ],
    )
    first, second = automated_findings(job, run, NOW), automated_findings(job, run, NOW)
    assert [f.finding_id for f in first] == [f.finding_id for f in second]
    assert [(f.metric, f.score, f.stderr) for f in first] == [("accuracy", 0.5, 0.2)]
    assert first[0].evidence_ref == (
        f"inspect-logs/{job.submission_id}/cyber-ctf-proxy@1.0.0/attempt-1.eval"
    )
    with pytest.raises(NoScores):
        automated_findings(job, run.model_copy(update={"metrics": run.metrics[1:]}), NOW)


def test_an_endpoint_refusal_is_published_in_our_words_only() -> None:
    detail = (
        "the evaluation endpoint 'https://lab.test:8443/v1/chat/completions' is not allowed: "
        "lab.test resolves to 10.0.0.7, which is private (RFC 1918)"
    )
    before, at_connection = (
        endpoint_not_allowed(detail, at_connection=when) for when in (False, True)
    )
    assert before.kind is at_connection.kind is FailureKind.ENDPOINT_NOT_ALLOWED
    assert before.message == (
        "the model endpoint is not allowed (before the run): the agency connects only to "
        "public https hosts and follows no redirects; details are in the service log"
    )
    assert "when the Inspect process connected" in at_connection.message
    for failure in (before, at_connection):
        assert "lab.test" not in failure.message and "10.0.0.7" not in failure.message
        assert failure.detail == detail, "the refusal itself goes to the log"


def test_an_external_finding_observed_in_the_future_is_refused() -> None:
    finding = example(ExternalFindingSubmitted, observed_at=NOW + timedelta(minutes=2))
    assert check_observation(finding, NOW + timedelta(minutes=2)) is None
    refusal = check_observation(finding, NOW + timedelta(minutes=1))
    assert refusal is not None and refusal.reason is RejectionReason.MALFORMED
    assert [e.path for e in refusal.field_errors] == ["data.observed_at"]


def authenticated_sender() -> Authenticated:
    return Authenticated("evaluator", EVALUATOR_ID, EXAMPLE_KEY_ID, "n", NOW, "0" * 64)


def addressed_finding() -> tuple[ExternalFindingSubmitted, Addressing]:
    """A finding and where its answer goes (as the handler reads it off the event)."""
    finding = example(ExternalFindingSubmitted)
    kind = ExternalFindingSubmitted.TYPE
    return finding, Addressing("event-1", kind, EVALUATOR_ID, str(finding.submission_id))


def test_a_sender_that_did_not_authenticate_learns_only_that_and_names_no_submission() -> None:
    finding, where = addressed_finding()
    revoked = Refusal(RejectionReason.REVOKED_KEY, "key k1 of evaluator x was revoked at ...")
    told = rejection(
        revoked, NOW, where=where, sender=None, external_finding_id=finding.external_finding_id
    )
    assert told is not None
    assert (told.reason, told.submission_id, told.external_finding_id) == (
        RejectionReason.AUTHENTICATION_FAILED,
        None,
        None,
    ), "keyed by the event id, not the submission it claims"
    assert "revoked" not in told.detail
    assert (told.rejected_event_id, told.evaluator_id) == ("event-1", EVALUATOR_ID)
    shape = Refusal(RejectionReason.SCHEMA_VIOLATION, "data.score must be <= 1")
    told = rejection(shape, NOW, where=where, sender=None)
    assert told is not None and told.reason is RejectionReason.SCHEMA_VIOLATION, "shape: as is"


def test_an_authenticated_evaluator_hears_the_precise_reason_about_its_finding() -> None:
    finding, where = addressed_finding()
    refusal = Refusal(RejectionReason.NOT_ASSIGNED, "evaluator x is not assigned to ...")
    told = rejection(
        refusal,
        NOW,
        where=where,
        sender=authenticated_sender(),
        external_finding_id=finding.external_finding_id,
    )
    assert told is not None and told.reason is RejectionReason.NOT_ASSIGNED
    assert (told.submission_id, told.external_finding_id) == (
        finding.submission_id,
        finding.external_finding_id,
    )


def test_input_without_a_usable_event_id_gets_no_answer() -> None:
    nowhere = Addressing(None, None, EVALUATOR_ID, str(uuid.uuid4()))
    refusal = Refusal(RejectionReason.MALFORMED_JSON, "not JSON")
    assert rejection(refusal, NOW, where=nowhere, sender=None) is None


def test_demo_profiles_script_answers_and_report_usage() -> None:
    profiles = load_profiles()
    question = {"messages": [{"role": "user", "content": "Molar mass of NaCl is 58.5 g/mol..."}]}
    capable = completion(profiles["capable"], question)
    assert capable["choices"][0]["message"]["content"] == "117"
    assert capable["usage"]["total_tokens"] > 0
    refused = completion(profiles["refuser"], question)["choices"][0]["message"]["content"]
    assert "can't help" in refused
    assert profiles["capable-slow"].delay_s > 0 and profiles["capable-slow"].rules
    assert profiles["broken"].status == 500


def test_an_external_finding_needs_an_assignment_and_an_open_window() -> None:
    finding = example(ExternalFindingSubmitted, method="automated")
    sid = finding.submission_id
    deadline = NOW + timedelta(days=3)
    evaluation = Evaluation(sid, "example-lab", "example-lab/m@1", "2026.1", deadline, None)
    assigned = Assignment(finding.evaluator_id, sid, NOW, "operator")

    def reason(
        assignment: Assignment | None, state: Evaluation | None, now: datetime = NOW
    ) -> RejectionReason | None:
        refusal = may_record(finding, assignment, state, now)
        return refusal.reason if refusal else None

    assert reason(assigned, evaluation) is None
    assert reason(None, evaluation) is RejectionReason.NOT_ASSIGNED
    assert reason(None, None) is RejectionReason.NOT_ASSIGNED, "no word on whether it exists"
    withdrawn = Evaluation(**{**evaluation.__dict__, "ended_by": EvaluationEnd.WITHDRAWN})
    assert reason(assigned, withdrawn) is RejectionReason.INVALID_STATE
    closed = Evaluation(**{**evaluation.__dict__, "window_closed_at": NOW})
    assert reason(assigned, closed) is RejectionReason.INVALID_STATE
    assert reason(assigned, evaluation, now=deadline) is RejectionReason.INVALID_STATE
    ended = Evaluation(**{**evaluation.__dict__, "ended_by": EvaluationEnd.ALL_SUITES_ENDED})
    assert reason(assigned, ended) is None, "red teaming goes on after the suites ended"
    refusal = may_record(finding, assigned, closed, NOW)
    assert refusal is not None and "review window" in refusal.detail


def test_the_method_of_an_external_finding_is_the_agencys() -> None:
    claimed_automated = example(ExternalFindingSubmitted, method="automated")
    recorded = manual_finding(claimed_automated, "example-lab/m@1", NOW)
    assert recorded.method == "manual"
