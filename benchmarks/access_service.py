"""The access service end to end: propagation to running enforcers, and the HTTP decision
API under a real load generator against the in-process enforcer, in one run.

    apt-get install -y wrk          # the load generator (a Debian package)
    .venv/bin/python -m benchmarks.access_service [--publications 40] [--seconds 20]

Needs the stack of deploy/stack.sh (FR_KAFKA_BOOTSTRAP, FR_DATABASE_URL). The access
service runs as its own process (``python -m services.access``) on topics and a schema
of its own; the enforcers and the decision API follow its policy feed.

- propagation: RestrictionOrdered produced on risk.events -> the service compiles and
  publishes the version through its outbox -> every running enforcer (1, then 10, each
  with its own feed consumer, in this process) has applied it; per (publication,
  enforcer) and for the last enforcer of each publication; publications paced 0.5 s
  apart (the latency of one order, not of a backlog);
- HTTP: ``labclient.cli decision-api`` as its own process, wrk with a Lua script that
  POSTs ``/v1/decision`` bodies drawn from a customer sample (mostly cache hits, as in
  production); the same questions answered by ``Enforcer.check`` in process.
In-process decisions against bare cedarpy and the impact preview on a million rows are
``benchmarks.access_decisions``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import BENCH_PREFIX, machine, percentile, record_results
from contracts.events.access import AccessPolicyPublished
from contracts.events.risk import RestrictionOrdered
from contracts.policy import Action
from services.labclient.enforcer import ApplyResult, Enforcer
from services.labclient.feed import PolicyFeed
from services.runtime import RuntimeSettings
from tests.access.generate import customer_row
from tests.access.rig import Rig, applied, model_id, running_rig, start_process
from tests.access.support import order

LAB = "example-lab"
TOKEN = "benchmark-caller-token-0123456789"


class Timed(Enforcer):
    """An enforcer that notes when it applied each version."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.applied_at: dict[tuple[str, int], float] = {}

    def apply(self, published: AccessPolicyPublished) -> ApplyResult:
        result = super().apply(published)
        if result is ApplyResult.APPLIED:
            self.applied_at[(published.model_id, published.policy_version)] = time.perf_counter()
        return result


async def propagation(rig: Rig, enforcers: int, publications: int) -> dict[str, float]:
    timed = [Timed(lab_id=LAB) for _ in range(enforcers)]
    feeds = [PolicyFeed(e, rig.lab_settings(LAB)) for e in timed]
    for feed in feeds:
        await feed.__aenter__()
    try:
        model = model_id()
        submission = uuid.uuid4()
        previous: RestrictionOrdered | None = None
        each: list[float] = []
        last: list[float] = []
        for number in range(1, publications + 1):
            current = order(
                model_id=model,
                nationalities=["CN"] if number % 2 else ["RU"],
                effective_at=datetime.now(UTC),
                supersedes=previous.order_id if previous else None,
            ).model_copy(update={"submission_id": submission})
            sent = time.perf_counter()
            await rig.send(current)
            for enforcer in timed:
                await applied(enforcer, model, number, timeout=60)
            times = [e.applied_at[(model, number)] - sent for e in timed]
            each += times
            last.append(max(times))
            previous = current
            await asyncio.sleep(0.5)
    finally:
        for feed in feeds:
            await feed.__aexit__()
    ms = [t * 1000 for t in each]
    worst = [t * 1000 for t in last]
    return {
        "enforcers": enforcers,
        "publications": publications,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "all_applied_p50_ms": percentile(worst, 50),
        "all_applied_p99_ms": percentile(worst, 99),
    }


LUA = """
local bodies = {}
local n = 0
for line in io.lines("%s") do n = n + 1; bodies[n] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  i = (i %% n) + 1
  return wrk.format(nil, "/v1/decision", nil, bodies[i])
end
"""


def wrk_figures(output: str) -> dict[str, float]:
    def millis(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    p50 = re.search(r"\s50%\s+(\S+)", output)
    p99 = re.search(r"\s99%\s+(\S+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    assert p50 and p99 and rps, output
    return {
        "p50_ms": millis(p50.group(1)),
        "p99_ms": millis(p99.group(1)),
        "requests_per_s": float(rps.group(1)),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


async def http_vs_in_process(
    rig: Rig, seconds: int, connections: int, questions: int
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    model = model_id()
    await rig.send(
        order(
            model_id=model,
            nationalities=["CN", "RU"],
            country_groups=["tier3"],
            nationality_rule="most_recent",
            effective_at=datetime.now(UTC),
        )
    )
    await rig.send(
        order(
            model_id=model,
            verification_statuses=["unverified"],
            request_locations=["KP", "IR"],
            effective_at=datetime.now(UTC),
        )
    )
    await rig.version(model, 2)
    rng = random.Random(7)
    rows = [customer_row(rng, i) for i in range(questions)]
    bodies = [
        json.dumps(
            {
                "principal": p.model_dump(mode="json"),
                "model_id": model,
                "request": r.model_dump(mode="json"),
            }
        )
        for p, r in rows
    ]
    folder = Path(tempfile.mkdtemp())
    (folder / "bodies.jsonl").write_text("\n".join(bodies) + "\n")
    (folder / "tokens").write_text(TOKEN + "\n")
    (folder / "post.lua").write_text(LUA % (folder / "bodies.jsonl", TOKEN))
    port = 18000 + random.randrange(1000)
    sidecar = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.labclient.cli",
            "--lab-id",
            LAB,
            "--bootstrap",
            rig.settings.kafka_bootstrap,
            "decision-api",
            "--tokens",
            str(folder / "tokens"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"FR_TOPIC_PREFIX": rig.settings.topic_prefix},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    status = (
                        await client.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
                    ).json()
                    if status["ready"] and status["models"].get(model, {}).get("version") == 2:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the decision API did not catch up"
                await asyncio.sleep(0.2)
        warm = subprocess.run(
            ["wrk", "-t1", "-c4", "-d3s", "-s", str(folder / "post.lua"), url],
            capture_output=True,
            text=True,
            check=True,
        )
        del warm
        run = await asyncio.to_thread(
            subprocess.run,
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(folder / "post.lua"),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        http = wrk_figures(run.stdout)
    finally:
        sidecar.terminate()
        sidecar.wait(30)
    # the same questions, in process, on an enforcer that followed the same feed
    enforcer = Enforcer(lab_id=LAB)
    async with PolicyFeed(enforcer, rig.lab_settings(LAB)):
        await applied(enforcer, model, 2)
        for p, r in rows:  # warm, as the server's cache was
            enforcer.check(p, model, Action.INVOKE, r)
        samples = []
        started = time.perf_counter()
        for _ in range(3):
            for p, r in rows:
                t0 = time.perf_counter_ns()
                enforcer.check(p, model, Action.INVOKE, r)
                samples.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - started
    in_process = {
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "decisions_per_s": len(samples) / elapsed,
        "mean_ms": statistics.fmean(samples),
    }
    return {
        "questions": questions,
        "connections": connections,
        "seconds": seconds,
        "http": http,
        "in_process": in_process,
        "throughput_ratio_http_to_in_process": http["requests_per_s"]
        / in_process["decisions_per_s"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publications", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--questions", type=int, default=5000)
    args = parser.parse_args()
    base = RuntimeSettings(
        relay_poll_interval_s=1.0, timer_poll_s=1.0, log_json=False, topic_prefix=BENCH_PREFIX
    )
    figures: dict[str, Any] = {"run_at": datetime.now(UTC).isoformat(), "machine": machine()}
    async with running_rig(base, start=False) as rig:
        service = start_process(rig.settings)
        try:
            await rig.send(order(model_id=model_id(), nationalities=["CN"]))  # warm-up
            await asyncio.sleep(3)
            for enforcers in (1, 10):
                result = await propagation(rig, enforcers, args.publications)
                figures[f"propagation_{enforcers}_enforcers"] = result
                print(json.dumps({f"propagation, {enforcers} enforcer(s)": result}), flush=True)
            result = await http_vs_in_process(rig, args.seconds, args.connections, args.questions)
            figures["decision_api_http"] = result
            print(json.dumps({"decision API (wrk) vs in-process": result}, indent=2), flush=True)
        finally:
            service.terminate()
            service.wait(30)
    record_results("access_service", figures)


if __name__ == "__main__":
    asyncio.run(main())
