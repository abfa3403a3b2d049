"""A lab can't have another lab's secret sent to its endpoint, and Inspect processes
inherit no secret from the worker's environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.events import EvaluationCompleted, EvaluationFailed, FindingRecorded
from contracts.events.evaluation import FailureKind, SuiteStatus
from tests.contracts.examples import LAB_ID
from tests.evaluation.rig import (
    DEMO_API_KEY,
    EvalRig,
    filing,
    forged_acceptance,
    inspect_children,
    presented_to,
)
from tests.kit import wait_for

ACME_REF = "labs/acme/eval-api-key"  # another lab's secret, as the submitter names it
ACME_SECRET = "acme-lab-secret-2c9e41"
# What a worker's environment holds in a real deployment: every lab's secret and more.
WORKER_ENVIRONMENT = {
    "FR_SECRET_LABS_ACME_EVAL_API_KEY": ACME_SECRET,
    "FR_SECRET_LABS_EXAMPLE_LAB_EVAL_API_KEY": DEMO_API_KEY,
    "OPENAI_API_KEY": "sk-agency-own-key-31f0",
}


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


async def test_a_compromised_intakes_foreign_credential_is_refused_and_runs_inherit_no_secret(
    rig: EvalRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rig.configure(only={"cyber-ctf-proxy"}, suites={"max_attempts": 3})
    acme_file = settings.evaluation_secrets_dir / ACME_REF
    acme_file.parent.mkdir(parents=True)
    acme_file.write_text(ACME_SECRET)
    environment = WORKER_ENVIRONMENT | {"FR_DATABASE_URL": settings.database_url}  # a password
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # example-lab names ACME's secret, for the endpoint it controls (here: the demo server).
    # Intake refuses such a filing (credential_not_owned): only a compromised intake could
    # send evaluation this acceptance, and evaluation refuses it on its own.
    borrowing = forged_acceptance(rig.demo_url, "capable", credential_ref=ACME_REF)
    own = filing(rig.demo_url, "capable-slow")  # runs long enough to look at its process
    await rig.start_service(settings)
    await rig.publish_as_compromised_intake(borrowing)
    await rig.file(own)

    seen: list[dict[str, str]] = []

    async def inspect_run_seen() -> bool:
        for pid in inspect_children(os.getpid()):  # the service's worker runs in this process
            try:
                seen.append(environment_of(pid))
            except OSError:
                continue  # it just ended
        return bool(seen)

    await wait_for(inspect_run_seen, timeout=60, what="an Inspect process to look at")
    reader = rig.events
    await reader.wait(
        lambda: all(reader.of(s.submission_id, EvaluationCompleted) for s in (borrowing, own)),
        timeout=90,
        what="both evaluations to end",
    )
    await reader.linger()

    # The borrowed reference failed at once, unretried, and the secret never left.
    [failed] = reader.of(borrowing.submission_id, EvaluationFailed)
    assert failed.failure is FailureKind.CREDENTIAL_NOT_OWNED and failed.attempts == 1
    assert ACME_REF in failed.error and f"labs/{LAB_ID}/" in failed.error
    assert ACME_SECRET not in failed.error
    [completed] = reader.of(borrowing.submission_id, EvaluationCompleted)
    assert [(s.status, s.attempts) for s in completed.suites] == [(SuiteStatus.FAILED, 1)]
    assert reader.of(borrowing.submission_id, FindingRecorded) == []
    assert not presented_to(rig.demo_url, ACME_SECRET), "ACME's secret reached the endpoint"
    assert presented_to(rig.demo_url, DEMO_API_KEY), "the server records what it is sent"
    attempts = await rig.fetch(
        """SELECT a.outcome, a.failure FROM job_attempts a
           JOIN jobs j USING (job_id) WHERE j.submission_id = $1""",
        borrowing.submission_id,
    )
    assert [(a["outcome"], a["failure"]) for a in attempts] == [("failed", "credential_not_owned")]

    # The lab's own evaluation ran, in a process that inherited none of those secrets.
    [finding] = reader.of(own.submission_id, FindingRecorded)
    assert finding.score == 1.0
    for child in seen:
        assert not [name for name in child if name.upper().startswith("FR_")]
        assert "OPENAI_API_KEY" not in child
        values = "\0".join(child.values())
        assert not [s for s in environment.values() if s in values]
        assert DEMO_API_KEY not in values, "the key travels on stdin only"
        assert child["PATH"] == os.environ["PATH"]
        assert child["INSPECT_DISPLAY"] == "none"
