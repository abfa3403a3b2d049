"""The lab's endpoint at connection time (SSRF): the Inspect process reaches it only
through the trust library's guarded client, so a redirect is refused unread, a name
that resolves (or rebinds) to a private address is never connected to, and the suite
fails at once as ``endpoint_not_allowed`` with nothing of what was refused in an event.
Real sockets, real Inspect processes."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import pytest

from contracts.events import EvaluationCompleted, EvaluationFailed, FindingRecorded
from contracts.events.evaluation import FailureKind, SuiteStatus
from services.evaluation.app import inspect_runner
from tests.evaluation.rig import EvalRig, endpoint_of, filing, forged_acceptance
from tests.trust.local_servers import Reply, make_certificate, redirect, serving

MAX_ATTEMPTS = 2  # a refusal is not retried: every suite below fails after one attempt
METADATA_BODY = b"ami-id: i-0123 iam/security-credentials/agency-role"


async def ended(rig: EvalRig, submissions: Sequence[UUID]) -> None:
    await rig.events.wait(
        lambda: all(rig.events.of(s, EvaluationCompleted) for s in submissions),
        timeout=120,
        what="every evaluation to end",
    )
    await rig.events.linger()


def refused_once(rig: EvalRig, submission_id: UUID) -> EvaluationFailed:
    """The submission's one suite failed as endpoint_not_allowed, at its first attempt."""
    failed: EvaluationFailed
    [failed] = rig.events.of(submission_id, EvaluationFailed)
    assert failed.failure is FailureKind.ENDPOINT_NOT_ALLOWED, failed.error
    assert failed.attempts == 1
    [completed] = rig.events.of(submission_id, EvaluationCompleted)
    assert [(s.status, s.attempts) for s in completed.suites] == [(SuiteStatus.FAILED, 1)]
    assert rig.events.of(submission_id, FindingRecorded) == []
    return failed


def assert_in_no_event(rig: EvalRig, *fragments: str | bytes) -> None:
    for record in rig.events.records:
        for fragment in fragments:
            needle = fragment if isinstance(fragment, bytes) else fragment.encode()
            assert needle not in (record.value or b""), (fragment, record.value)


async def test_a_redirecting_endpoint_is_not_followed_and_fails_as_endpoint_not_allowed(
    rig: EvalRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = make_certificate(rig.directory, "lab.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert_file))  # the Inspect child's CA
    async with serving(Reply(body=METADATA_BODY)) as (private_port, private):
        internal = f"http://127.0.0.1:{private_port}/latest/meta-data/"
        metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        moved = Reply(307, "Temporary Redirect", (("Location", internal),), b"REDIRECT-BODY")
        async with (
            serving(moved, tls=certificate.server_context()) as (https_port, https_lab),
            serving(redirect(metadata)) as (http_port, http_lab),
        ):
            # Both labs are allowlisted (as the demo server is): the redirect is the attack.
            https_url, http_url = (
                f"https://127.0.0.1:{https_port}/v1",
                f"http://127.0.0.1:{http_port}/v1",
            )
            settings = rig.configure(
                only={"cyber-ctf-proxy"},
                suites={"max_attempts": MAX_ATTEMPTS},
                evaluation_endpoint_allowlist=[
                    endpoint_of(rig.demo_url),
                    endpoint_of(https_url),
                    endpoint_of(http_url),
                ],
            )
            to_internal = filing(https_url, "capable")
            to_metadata = filing(http_url, "capable")
            await rig.start_service(settings)
            await rig.start_intake(allow=[https_url, http_url])  # intake allowlists both
            await rig.file(to_internal, to_metadata)
            await ended(rig, [to_internal.submission_id, to_metadata.submission_id])

    for submission in (to_internal, to_metadata):
        failed = refused_once(rig, submission.submission_id)
        assert failed.error.startswith(
            "the model endpoint is not allowed (when the Inspect process connected)"
        )
    assert https_lab.requests and http_lab.requests, "the labs were asked"
    assert https_lab.requests[0]["request"] == "POST /v1/chat/completions HTTP/1.1"
    assert private.connections == 0, "the redirect was not followed"
    assert_in_no_event(rig, METADATA_BODY, b"REDIRECT-BODY", internal, "169.254.169.254")
    attempts = await rig.fetch("SELECT failure, error FROM job_attempts")
    assert {a["failure"] for a in attempts} == {"endpoint_not_allowed"} and len(attempts) == 2
    assert not [a for a in attempts if "169.254" in a["error"] or "meta-data" in a["error"]]


async def test_a_private_address_from_a_compromised_intake_or_a_rebinding_name_is_never_connected(
    rig: EvalRig,
) -> None:
    """``private.lab.test`` resolves to loopback for the worker: refused before the run.
    ``rebind.lab.test`` resolves to a public address when the worker checks it and to
    loopback when the Inspect process connects (DNS rebinding): refused at connect. The
    allowlisted demo server is evaluated as before."""
    async with serving(Reply()) as (port, lab):
        worker_dns = {"private.lab.test": ["127.0.0.1"], "rebind.lab.test": ["93.184.216.34"]}

        async def resolve(host: str, _port: int) -> Sequence[str]:
            if host not in worker_dns:
                raise OSError(f"{host}: name or service not known")
            return worker_dns[host]

        settings = rig.configure(only={"cyber-ctf-proxy"}, suites={"max_attempts": MAX_ATTEMPTS})
        runner = inspect_runner(settings, hosts={"rebind.lab.test": ["127.0.0.1"]})
        # Intake, with the same names, refuses the private one at submission: only a
        # compromised intake sends it on. The rebinding name looks public to intake too.
        private = forged_acceptance(f"https://private.lab.test:{port}/v1", "capable")
        rebound = filing(f"https://rebind.lab.test:{port}/v1", "capable")
        demo = filing(rig.demo_url, "capable")
        await rig.start_service(settings, runner=runner, resolver=resolve)
        await rig.start_intake(resolver=resolve)
        await rig.publish_as_compromised_intake(private)
        await rig.file(rebound, demo)
        await ended(rig, [private.submission_id, rebound.submission_id, demo.submission_id])

    before = refused_once(rig, private.submission_id)
    assert before.error.startswith("the model endpoint is not allowed (before the run)")
    at_connect = refused_once(rig, rebound.submission_id)
    assert at_connect.error.startswith(
        "the model endpoint is not allowed (when the Inspect process connected)"
    )
    assert lab.connections == 0, "no connection to the private address, ever"
    [finding] = rig.events.of(demo.submission_id, FindingRecorded)
    assert finding.score == 1.0, "the allowlisted demo server is evaluated as before"
    assert_in_no_event(rig, "127.0.0.1", "93.184.216.34", "lab.test")
    attempts = await rig.fetch(
        """SELECT j.submission_id, a.failure, a.inspect_seconds FROM job_attempts a
           JOIN jobs j USING (job_id) WHERE j.submission_id = ANY($1::uuid[])""",
        [private.submission_id, rebound.submission_id],
    )
    assert sorted(
        (a["submission_id"] == private.submission_id, a["failure"]) for a in attempts
    ) == [
        (False, "endpoint_not_allowed"),
        (True, "endpoint_not_allowed"),
    ]
