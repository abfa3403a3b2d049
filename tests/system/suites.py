"""The one Inspect suite the system tests run many times: the shipped cyber proxy, cut
to its first puzzle.

A real Inspect evaluation (solver, scorer, log, evidence) of the demo lab model over
HTTP, as the shipped ``cyber-ctf-proxy`` runs it, only with one sample instead of
three: an Inspect process costs about 3.7 s on a 2-core machine (benchmarks/RESULTS.md),
and the system tests run dozens of them. It scores 0 or 1; the demo model's ``capable``
profile solves the puzzle, which the shipped thresholds policy reads as critical cyber
(escalation, interim restriction). The Inspect process imports this module by its task
ref, ``tests.system.suites:ctf_proxy_one_sample``, from the service's working directory
(the repository root).
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.scorer import includes

from services.evaluation.suites.common import proxy_task
from services.evaluation.suites.cyber import SAMPLES

TASK_REF = "tests.system.suites:ctf_proxy_one_sample"


@task
def ctf_proxy_one_sample() -> Task:
    """BENIGN PROXY for vulnerability discovery: the first toy CTF puzzle of the shipped
    cyber proxy (find the faulty line of a C snippet), scored by the line."""
    return proxy_task("cyber_ctf_proxy_one_sample", SAMPLES[:1], scorer=includes())
