"""One Inspect evaluation in a child process: ``python -m services.evaluation.inspect_process``.

Reads a ChildRequest (JSON) on stdin, walls itself off from the worker's
secrets, the evidence and the other runs (isolation.restrict_self: Landlock,
no_new_privs, non-dumpable) before anything of the task is imported, runs the
task with ``eval_async`` against the lab's endpoint through Inspect's
OpenAI-compatible provider, and writes a RunResult (JSON) to its stdout.

Every request to the lab goes through the trust library's guarded HTTP client
(``services.trust.http_guard``), handed to the provider as its ``http_client``:
the URL is checked, the host resolved and checked again at each connection
(DNS rebinding after the worker's check is caught there), the connection made
to exactly the address checked, and a redirect refused unread. A refusal
reaches Inspect as the SDK's ``APIConnectionError`` (its ``__cause__`` the
guard's ``EndpointNotAllowed``) and Inspect keeps only a message, so the guard
reports each refusal to this process too (``on_refusal``), which returns the
first in ``RunResult.endpoint_refusal``. Why
a process per run: Inspect allows only one ``eval_async`` per process, a worker
runs several jobs at once, and a run that overstays its timeout, loses its
lease or is stopped by the window closing must stop for real — the worker kills
the process. Inspect's console output is
sent to stderr so that stdout carries nothing but the result.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.evaluation.isolation import drop_capabilities, restrict_self
from services.evaluation.runs import ChildRequest, MetricResult, RunResult
from services.trust.endpoints import EndpointPolicy, Resolver, system_resolver
from services.trust.http_guard import guarded_client
from services.trust.refusal import Refusal

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.log import EvalLog

PROVIDER_SERVICE = "lab"  # model name: openai-api/<service>/<api_model>


def exit_with_parent(interval_s: float = 0.5) -> None:
    """Stop when the worker dies (even by SIGKILL): an orphaned run must not go on."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def load_task(ref: str) -> Task:
    module_name, _, function = ref.partition(":")
    factory = getattr(importlib.import_module(module_name), function)
    task: Task = factory()
    return task


def metrics_of(log: EvalLog) -> list[MetricResult]:
    """One result per (scorer, metric); a scorer's stderr goes with its other metrics."""
    results: list[MetricResult] = []
    for score in log.results.scores if log.results else []:
        stderr = score.metrics.get("stderr")
        for name, metric in score.metrics.items():
            if name == "stderr":
                continue
            results.append(
                MetricResult(
                    scorer=score.name,
                    metric=name,
                    value=float(metric.value),
                    stderr=float(stderr.value) if stderr is not None else None,
                    samples_scored=score.scored_samples,
                )
            )
    return results


def hosts_resolver(hosts: Mapping[str, Sequence[str]]) -> Resolver:
    """Names in ``hosts`` resolve to their addresses, others through DNS (a hosts file)."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        listed = hosts.get(host)
        return listed if listed is not None else await system_resolver(host, port)

    return resolve


async def run(request: ChildRequest) -> RunResult:
    from inspect_ai import eval_async
    from inspect_ai.model import GenerateConfig, get_model
    from inspect_ai.util import display_type

    display_type()  # initialises from INSPECT_DISPLAY=none before eval_async can pick "plain"
    task = load_task(request.task)
    refusals: list[Refusal] = []
    client = guarded_client(
        EndpointPolicy.from_entries(request.endpoint_allowlist),
        resolve=hosts_resolver(request.hosts),
        refuse_redirects=True,
        on_refusal=refusals.append,
    )
    try:  # open until the evaluation ends: Inspect replaces a closed client with its own
        model = get_model(
            f"openai-api/{PROVIDER_SERVICE}/{request.api_model}",
            base_url=request.base_url,
            api_key=request.api_key.get_secret_value(),
            memoize=False,
            max_retries=0,  # the OpenAI SDK's own retries: Inspect's config below owns retrying
            http_client=client,
            config=GenerateConfig(
                max_retries=request.max_retries, timeout=request.request_timeout_s
            ),
        )
        if getattr(model.api, "http_client", None) is not client:
            raise RuntimeError("Inspect's provider did not take the guarded HTTP client")
        started = time.perf_counter()
        logs = await eval_async(
            task,
            model=model,
            log_dir=str(request.log_dir),
            log_format="eval",
            log_level="error",
            ctl_server=False,
            score_display=False,
        )
        seconds = time.perf_counter() - started
    finally:
        await client.aclose()
    log = logs[0]
    return RunResult(
        status=log.status,
        error=log.error.message if log.error else None,
        log_file=Path(log.location),  # the worker moves it into the evidence and hashes it
        inspect_seconds=seconds,
        samples_total=log.results.total_samples if log.results else 0,
        samples_completed=log.results.completed_samples if log.results else 0,
        metrics=metrics_of(log),
        endpoint_refusal=refusals[0].detail if refusals else None,
    )


def prepare_home() -> None:
    """The working directory the worker made for this process: its home, temp, XDG dirs."""
    for name in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        if name in os.environ:
            Path(os.environ[name]).mkdir(mode=0o700, parents=True, exist_ok=True)


def main() -> None:
    drop_capabilities()  # before anything else: a root worker's child is root, powerless
    result_fd = os.dup(1)
    os.dup2(2, 1)  # anything Inspect prints lands on stderr
    os.environ["INSPECT_DISPLAY"] = "none"
    request = ChildRequest.model_validate_json(sys.stdin.buffer.read())
    prepare_home()
    request.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Still one thread, and nothing of the task loaded: from here on, neither this
    # process nor anything it starts can reach what the sandbox hides.
    sandbox = request.sandbox
    restrict_self(sandbox.hidden, sandbox.readable, sandbox.writable, sandbox.connect_ports)
    exit_with_parent()
    result = asyncio.run(run(request))
    os.write(result_fd, result.model_dump_json().encode())
    os.close(result_fd)


if __name__ == "__main__":
    main()
