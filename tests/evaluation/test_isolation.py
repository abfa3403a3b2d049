"""Task code in an Inspect process reaches neither the worker's memory and environment nor
its secrets, the evidence, the database or the broker (services/evaluation/isolation.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inspect_ai.log import read_eval_log

from contracts.events import FindingRecorded
from services.evaluation.findings import EVIDENCE_PREFIX
from tests.evaluation.rig import (
    CREDENTIAL_REF,
    DEMO_API_KEY,
    EvalRig,
    filing,
    suite_entry,
)
from tests.evaluation.tasks import SNOOP_TARGETS
from tests.kit import process_env

ACME_SECRET = "acme-lab-secret-0d41b7"  # another lab's, in the worker's environment


def environment_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


async def test_task_code_reaches_neither_the_workers_memory_nor_its_secrets(rig: EvalRig) -> None:
    settings = rig.configure(
        only=set(),
        extra_suites=[suite_entry("snooping-task", "tests.evaluation.tasks:snooping")],
        worker=False,
        evaluation_inspect_env_passthrough=[SNOOP_TARGETS],
    )
    written = rig.directory / "written-by-the-task"
    other_run = settings.evaluation_inspect_log_dir / "another-submission" / "attempt-1.eval"
    other_run.parent.mkdir(parents=True)
    other_run.write_text("another lab's samples and its model's answers")
    targets = {
        "secrets_dir": str(settings.evaluation_secrets_dir),
        "secret_ref": CREDENTIAL_REF,  # the very secret this run was given on stdin
        "evidence_dir": str(settings.evaluation_inspect_log_dir),
        "evidence_file": str(other_run),
        "database_port": urlsplit(settings.database_url).port,
        "broker_port": int(settings.kafka_bootstrap.rsplit(":", 1)[1]),
        "outside_file": str(written),
    }
    await rig.start_service(settings)
    # A real worker process, as deployed, with every lab's secret in its environment.
    env = process_env(
        settings,
        FR_SECRET_LABS_ACME_EVAL_API_KEY=ACME_SECRET,
        **{SNOOP_TARGETS: json.dumps(targets)},
    )
    worker = subprocess.Popen([sys.executable, "-m", "services.evaluation", "worker"], env=env)
    try:
        submission = filing(rig.demo_url, "capable")
        await rig.file(submission)
        sid = submission.submission_id
        await rig.events.wait(
            lambda: bool(rig.events.of(sid, FindingRecorded)), timeout=90, what="the probes"
        )
        # What the task was denied is there: the worker's environment as it started.
        started_with = environment_of(worker.pid)
        assert ACME_SECRET.encode() in started_with and b"FR_DATABASE_URL" in started_with
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0

    [finding] = rig.events.of(sid, FindingRecorded)
    probes = probes_of(settings.evaluation_inspect_log_dir, finding)
    reached = {name for name, result in probes.items() if result["reached"]}
    refused = {name: result["error"] for name, result in probes.items() if not result["reached"]}
    assert set(refused.values()) == {"PermissionError"}, refused
    assert reached == {
        "control: parent status",
        "control: its own home",
        "control: the task's source",
    }, probes
    assert f"Pid:\t{worker.pid}" in probes["control: parent status"]["got"], "the worker"
    assert not written.exists()
    log_text = read_eval_log(str(evidence_file(settings.evaluation_inspect_log_dir, finding)))
    dumped = log_text.model_dump_json()
    assert ACME_SECRET not in dumped and DEMO_API_KEY not in dumped


def evidence_file(log_dir: Path, finding: FindingRecorded) -> Path:
    return log_dir / finding.evidence_ref.removeprefix(f"{EVIDENCE_PREFIX}/")


def probes_of(log_dir: Path, finding: FindingRecorded) -> dict[str, dict[str, Any]]:
    log = read_eval_log(str(evidence_file(log_dir, finding)))
    assert log.samples is not None
    [sample] = log.samples
    assert sample.scores is not None
    explanation = sample.scores["snoop"].explanation
    assert explanation is not None
    probes: dict[str, dict[str, Any]] = json.loads(explanation)
    return probes
