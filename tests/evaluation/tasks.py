"""Inspect tasks that misbehave on purpose, run by the real worker in real Inspect processes.

``crashing`` and ``garbling`` end a run badly with the sample's text in hand (on
stderr, in the result pipe); ``snooping`` is hostile task code that tries to reach
the worker's secrets and reports what it could reach.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import Score, Scorer, Target, accuracy, match, scorer
from inspect_ai.solver import Generate, Solver, TaskState, generate, solver, system_message

SAMPLE_TEXT = "SAMPLE-QUESTION-4b1e: which toy flag hides in the base64 string RkxBR3t9?"
SYSTEM_PROMPT = "SYSTEM-PROMPT-9d27: you are being evaluated; answer with the flag only."
SNOOP_TARGETS = "SNOOP_TARGETS"  # JSON: what the snooping task tries to reach


def _task(name: str, solvers: list[Solver], scorer_: Scorer | None = None) -> Task:
    return Task(
        name=name,
        dataset=MemoryDataset([Sample(id="s1", input=SAMPLE_TEXT, target="FLAG{}")], name=name),
        solver=[system_message(SYSTEM_PROMPT), *solvers],
        scorer=scorer_ or match(),
    )


@solver
def crash_with_the_sample() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        sys.stderr.write(f"crashing while handling {state.messages}\n")
        sys.stderr.flush()
        os._exit(1)

    return solve


@task
def crashing() -> Task:
    """The Inspect process dies mid-sample, its stderr full of the sample and prompt."""
    return _task("crashing", [crash_with_the_sample()])


@solver
def write_the_sample_into_the_result() -> Solver:
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        for fd in (int(name) for name in os.listdir("/proc/self/fd")):
            if fd > 2 and _is_pipe(fd):
                os.write(fd, f"{SYSTEM_PROMPT} {state.input_text}".encode())
        return await generate(state)

    return solve


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


@task
def garbling() -> Task:
    """Task code writes the sample into the result pipe: the result is unreadable."""
    return _task("garbling", [write_the_sample_into_the_result(), generate()])


# --- hostile task code ------------------------------------------------------------------


def _attempt(action: Any) -> dict[str, Any]:
    try:
        got = action()
    except Exception as exc:
        return {"reached": False, "error": type(exc).__name__}
    return {"reached": True, "got": str(got)[:200]}


def _connect(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"


def probes(targets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Everything the task code tries, and whether it got there."""
    parent = os.getppid()
    secrets = Path(targets["secrets_dir"])
    home = Path(os.environ["HOME"])
    return {
        "parent environ": _attempt(lambda: Path(f"/proc/{parent}/environ").read_bytes()),
        "parent memory": _attempt(lambda: open(f"/proc/{parent}/mem", "rb").close()),
        "parent maps": _attempt(lambda: Path(f"/proc/{parent}/maps").read_text()),
        "parent signal": _attempt(lambda: os.kill(parent, 0)),
        "secrets directory listing": _attempt(lambda: os.listdir(secrets)),
        "a secret file": _attempt(lambda: (secrets / targets["secret_ref"]).read_text()),
        "evidence directory": _attempt(lambda: os.listdir(targets["evidence_dir"])),
        "another run's evidence": _attempt(lambda: Path(targets["evidence_file"]).read_text()),
        "the database": _attempt(lambda: _connect(int(targets["database_port"]))),
        "the broker": _attempt(lambda: _connect(int(targets["broker_port"]))),
        "a file outside its own directory": _attempt(
            lambda: Path(targets["outside_file"]).write_text("x")
        ),
        # Controls: what the task may do, so a probe that cannot succeed shows up.
        "control: parent status": _attempt(lambda: Path(f"/proc/{parent}/status").read_text()),
        "control: its own home": _attempt(lambda: (home / "scratch").write_text("x")),
        "control: the task's source": _attempt(lambda: Path(__file__).read_text()[:10]),
    }


@scorer(metrics=[accuracy()])
def snoop() -> Scorer:
    async def score(state: TaskState, target: Target) -> Score:
        results = probes(json.loads(os.environ[SNOOP_TARGETS]))
        return Score(value=1.0, explanation=json.dumps(results))

    return score


@task
def snooping() -> Task:
    """Hostile task code: reports what of the worker's secrets it could reach."""
    return _task("snooping", [generate()], snoop())
