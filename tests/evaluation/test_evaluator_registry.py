"""The evaluator registry through the operator CLI, on the real database: a revoked key
stays revoked, and no evaluator's key command takes over another evaluator's key id
(the old ``evaluators add-key`` did both), with the running service refusing what the
registry refuses."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from contracts.events import ExternalFindingRejected, FindingRecorded
from tests.evaluation.rig import (
    EvalRig,
    Ran,
    evaluation_cli,
    evaluation_started,
    filing,
    rejections,
)


async def test_a_revoked_key_stays_revoked_and_no_evaluator_takes_over_a_key_id(
    rig: EvalRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.evaluation")
    settings = await rig.start(worker=False)
    submission = filing(rig.demo_url, "refuser")
    await rig.file(submission)
    await evaluation_started(rig, submission.submission_id)

    async def cli(*args: str) -> Ran:
        return await evaluation_cli(settings, *args)

    async def ok(*args: str) -> str:
        done = await cli(*args)
        assert done.code == 0, done.err
        return done.out

    async def refused(*args: str, because: str) -> None:
        done = await cli(*args)
        assert done.code == 1, (done.out, done.err)
        assert "error:" in done.err and because in done.err, done.err

    async def keygen(name: str) -> tuple[Path, str]:
        private = rig.directory / f"{name}.pem"
        return private, (await ok("evaluators", "keygen", "--out", str(private))).strip()

    (a1_file, a1), (a2_file, a2), (b_file, b) = [await keygen(n) for n in ("a1", "a2", "b")]
    await ok("evaluators", "register", "red-team-a")
    await ok("evaluators", "register", "red-team-b")
    await ok("evaluators", "key", "add", "red-team-a", "a-1", "--public-key", a1)
    await ok("evaluators", "key", "revoke", "red-team-a", "a-1", "--reason", "leaked", "--yes")

    # Re-adding the revoked key, under its id or another, does not undo the revocation.
    await refused(
        "evaluators", "key", "add", "red-team-a", "a-1", "--public-key", a1,
        because="(revoked; revocation is final)",
    )  # fmt: skip
    await refused(
        "evaluators", "key", "add", "red-team-a", "a-1", "--public-key", a2,
        because="a key id is never reused",
    )  # fmt: skip
    await refused(
        "evaluators", "key", "add", "red-team-a", "a-9", "--public-key", a1,
        because="this public key is registered already",
    )  # fmt: skip
    # Another evaluator can't take a key id over, live or revoked.
    await ok("evaluators", "key", "add", "red-team-a", "a-2", "--public-key", a2)
    for key_id in ("a-2", "a-1"):
        await refused(
            "evaluators", "key", "add", "red-team-b", key_id, "--public-key", b,
            because=f"key id {key_id} belongs to another evaluator",
        )  # fmt: skip

    listed: list[dict[str, Any]] = json.loads(await ok("evaluators", "key", "list", "--json"))
    assert [(k["evaluator"], k["key_id"], k["state"]) for k in listed] == [
        ("red-team-a", "a-1", "revoked"),
        ("red-team-a", "a-2", "valid"),
    ]
    rows = await rig.fetch(
        "SELECT key_id, principal_id, revoked_at IS NOT NULL AS revoked FROM trust_keys"
        " ORDER BY key_id"
    )
    assert [tuple(r) for r in rows] == [("a-1", "red-team-a", True), ("a-2", "red-team-a", False)]

    # What the service accepts follows the registry: the revoked key signs nothing, the
    # other evaluator's key does not speak for a-2, and a-2 does.
    sid = str(submission.submission_id)
    await ok("evaluators", "assign", "red-team-a", sid)
    await ok("evaluators", "assign", "red-team-b", sid)

    def finding(evaluator: str, key_id: str, key_file: Path, score: str) -> list[str]:
        return [
            "findings", "submit", "--submission", sid, "--evaluator", evaluator,
            "--key-id", key_id, "--key-file", str(key_file), "--domain", "cyber",
            "--capability", "exploit-development", "--score", score, "--metric", "success-rate",
            "--summary", "toy flags", "--evidence-ref", "evidence://red-team/1",
        ]  # fmt: skip

    await ok(*finding("red-team-a", "a-1", a1_file, "0.1"))
    await ok(*finding("red-team-b", "a-2", b_file, "0.2"))
    await ok(*finding("red-team-a", "a-2", a2_file, "0.3"))
    reader = rig.events
    await reader.wait(
        lambda: len(rejections(reader)) >= 2 and bool(reader.of(sid, FindingRecorded)),
        what="two refusals and the finding",
    )
    await reader.linger()
    [recorded] = reader.of(sid, FindingRecorded)
    assert (recorded.evaluator, recorded.score) == ("red-team-a", 0.3)
    answers: list[ExternalFindingRejected] = rejections(reader)
    assert [a.reason.value for a in answers] == ["authentication_failed"] * 2
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "revoked_key: key 'a-1' of evaluator 'red-team-a' was revoked" in logged
    assert "unknown_key: evaluator 'red-team-b' has no registered key 'a-2'" in logged
