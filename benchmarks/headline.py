"""Headline benchmarks: the whole system on the real secured stack, in one run.

    .venv/bin/python -m benchmarks.headline [--write] [--quick] [--latency 12]
        [--enforcers 1 5] [--escalating 12] [--cleared 300] [--configs 1 2 1x12 2x12]

Needs the stack of deploy/stack.sh (Kafka SASL_SSL + PostgreSQL; FR_KAFKA_BOOTSTRAP,
FR_DATABASE_URL). The four services run as their own processes (``python -m
services.<name>``) through the system tests' rig (tests/system/rig.py), the demo lab
model server as a process of its own, the labs' enforcers (``PolicyFeed`` + ``Enforcer``)
in this process. The evaluation suite is the one-sample cyber proxy of
tests/system/suites.py: a real Inspect run of the demo model over HTTP, which finds
critical cyber capability, so risk escalates and orders the interim restriction.

- **latency**: one submission at a time, from the lab's signed publish to the moment an
  enforcer of the lab applied the interim restriction's policy and denied a foreign
  national; broken down by stage from the records' timestamps on each topic and the
  evaluation's attempt rows (queue, Inspect process start and stop, the Inspect eval);
  against raw aiokafka produce -> consume on the same broker, paced;
- **time to enforce**: RestrictionOrdered on risk.events -> every enforcer applied the
  new policy version, with each count of ``--enforcers`` following the lab's feed;
- **throughput** per config (``R`` replicas of every service, ``RxP`` with every
  partitioned topic at ``P`` partitions): ``--escalating`` submissions filed at once
  (each an Inspect run; done when the lab's enforcer denies the foreign national), then
  ``--cleared`` image-only submissions filed at once (no suite applies; done when access
  has read risk's last event for them), against a raw aiokafka burst;
- **memory**: each service process's RSS at rest (started, idle) and its peak under the
  throughput load, the Inspect child processes' peak.

``--write`` rewrites the section "Headline: the whole system" of benchmarks/RESULTS.md
and the key ``headline`` of benchmarks/results.json. A stage that fails prints
``headline: FAILED: <stage>`` and the command exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.common import machine, percentile, raw_baseline, record_results
from benchmarks.platform_hop import tick
from contracts.events import (
    AccessPolicyPublished,
    EvaluationCompleted,
    FindingRecorded,
    RestrictionOrdered,
    SubmissionAccepted,
)
from contracts.events.common import make_model_id
from contracts.registry import consumer_group
from services.labclient.enforcer import ApplyResult, Enforcer
from services.runtime import RuntimeSettings
from tests.evaluation.rig import demo_model_server
from tests.system.rig import DEMO_API_KEY, SERVICES, Lab, SystemRig, foreign_national
from tests.system.rig import running_system as system_rig
from tests.system.scenario import poll, read_all
from tests.system.workload import Filing, Intended, Kind, file_all

RESULTS_MD = Path(__file__).parent / "RESULTS.md"
SECTION = "## Headline: the whole system"
LAB_ID = "lab-headline"
SECONDS_PER_DAY = 86_400.0  # real days: no review window closes during a run
RAW_PACED_RATE = 20.0
RAW_BURST = 2000
SAMPLE_EVERY_S = 0.25


class Failed(Exception):
    """A stage of the run failed: ``headline: FAILED: <stage>``."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {cause!r}")
        self.stage = stage
        self.cause = cause


# --- pure figures -------------------------------------------------------------------------


def p50_p99(values: Sequence[float], *, digits: int = 3) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), digits),
        "p99": round(percentile(values, 99), digits),
    }


@dataclass(frozen=True)
class Config:
    """``R`` replicas of every service, or ``RxP``: and every partitioned topic at ``P``."""

    replicas: int
    partitions: int | None = None

    @classmethod
    def parse(cls, text: str) -> Config:
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip())
        if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
            raise ValueError(f"not a config (R or RxP, e.g. 2x12): {text!r}")
        return cls(int(match[1]), int(match[2]) if match[2] else None)

    @property
    def name(self) -> str:
        return f"{self.replicas}x{self.partitions}" if self.partitions else str(self.replicas)

    def describe(self) -> str:
        replicas = f"{self.replicas} replica{'s' if self.replicas > 1 else ''} per service"
        parts = f"{self.partitions} partitions" if self.partitions else "registry partitions (6)"
        return f"{replicas}, {parts}"


@dataclass
class Stamps:
    """Wall-clock times (epoch seconds) of one submission on its way to enforcement."""

    published: float  # the lab's client begins its signed publish
    accepted: float  # SubmissionAccepted on intake.events
    attempt_started: float  # evaluation claims the job (job_attempts.started_at)
    attempt_ended: float  # the Inspect child ended
    inspect_s: float  # eval_async inside the child
    evaluated: float  # FindingRecorded / EvaluationCompleted on evaluation.events
    ordered: float  # the interim RestrictionOrdered on risk.events
    policy: float  # AccessPolicyPublished on the lab's policy feed
    applied: list[float]  # each enforcer applied the version
    denied: float  # the first enforcer denied the foreign national


# What each stage of the breakdown spans (evaluation's three parts add up to it with the
# recording, whose share is what is left).
STAGES = (
    ("intake", "lab publish -> SubmissionAccepted"),
    ("evaluation", "SubmissionAccepted -> FindingRecorded"),
    ("evaluation_queue", "  of which: accepted -> job claimed"),
    ("evaluation_inspect_process", "  of which: Inspect process start and stop"),
    ("evaluation_inspect_eval", "  of which: the Inspect eval itself"),
    ("evaluation_record", "  of which: run ended -> FindingRecorded published"),
    ("risk", "FindingRecorded -> RestrictionOrdered (interim)"),
    ("access", "RestrictionOrdered -> AccessPolicyPublished on the lab's feed"),
    ("enforcer", "AccessPolicyPublished -> enforcer denies the foreign national"),
    ("total", "lab publish -> foreign national denied"),
)


def stages(s: Stamps) -> dict[str, float]:
    """One submission's time (seconds) in each stage of ``STAGES``."""
    attempt = s.attempt_ended - s.attempt_started
    return {
        "intake": s.accepted - s.published,
        "evaluation": s.evaluated - s.accepted,
        "evaluation_queue": s.attempt_started - s.accepted,
        "evaluation_inspect_process": attempt - s.inspect_s,
        "evaluation_inspect_eval": s.inspect_s,
        "evaluation_record": s.evaluated - s.attempt_ended,
        "risk": s.ordered - s.evaluated,
        "access": s.policy - s.ordered,
        "enforcer": s.denied - s.policy,
        "total": s.denied - s.published,
    }


def breakdown(stamps: Sequence[Stamps]) -> dict[str, dict[str, float]]:
    """p50/p99 (seconds) of each stage over the submissions."""
    per = [stages(s) for s in stamps]
    return {name: p50_p99([p[name] for p in per]) for name, _ in STAGES}


def time_to_enforce_ms(stamps: Sequence[Stamps]) -> dict[str, float]:
    """RestrictionOrdered -> the last enforcer applied the version, p50/p99 in ms."""
    return p50_p99([(max(s.applied) - s.ordered) * 1000 for s in stamps], digits=1)


# --- rendering ----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render(figures: Mapping[str, Any]) -> str:
    """The RESULTS.md section of one run's figures (as ``results.json`` holds them)."""
    lat = figures["latency"]
    raw = figures["raw"]
    lines = [
        SECTION,
        "",
        "`.venv/bin/python -m benchmarks.headline --write` "
        f"({figures['arguments']}); **machine:** {figures['machine']}; "
        f"**load average** (1 min) {figures['load_before']} before, "
        f"{figures['load_after']} after ({figures['load_note']}); "
        f"the run took {figures['run_seconds'] / 60:.1f} min. "
        "Kafka SASL_SSL and PostgreSQL of deploy/stack.sh; the four services as their own "
        "processes (the system tests' rig), the one-sample cyber proxy suite (a real "
        "Inspect run of the demo lab model over HTTP), the lab's enforcers in the "
        "benchmark's process. Figures in `results.json` under `headline`. "
        "With few samples p99 is the largest value (nearest rank).",
        "",
        "| end to end | p50 | p99 | ratio to raw (p50 / p99) |",
        "|---|---|---|---|",
        f"| raw aiokafka produce -> consume, {raw['paced_messages']} records at "
        f"{raw['paced_rate_per_s']:.0f}/s | {raw['paced_p50_ms']:.1f} ms | "
        f"{raw['paced_p99_ms']:.1f} ms | 1 |",
    ]
    for count, run in sorted(lat["by_enforcers"].items(), key=lambda kv: int(kv[0])):
        total = run["stages_s"]["total"]
        lines.append(
            f"| lab's signed publish -> foreign national denied, {run['submissions']} "
            f"submissions one at a time, {count} enforcer(s) | {_ms(total['p50'])} | "
            f"{_ms(total['p99'])} | x{total['p50'] * 1000 / raw['paced_p50_ms']:,.0f} / "
            f"x{total['p99'] * 1000 / raw['paced_p99_ms']:,.0f} |"
        )
    first = lat["by_enforcers"][str(min(int(k) for k in lat["by_enforcers"]))]
    lines += [
        "",
        f"Where the time goes ({first['enforcers']} enforcer; each stage's own p50 and "
        "p99, so the p50s need not add up to the total's):",
        "",
        "| stage | p50 | p99 |",
        "|---|---|---|",
    ]
    for name, what in STAGES:
        value = first["stages_s"][name]
        label = what.replace("  of which:", "... of which:")
        lines.append(f"| {name}: {label} | {_ms(value['p50'])} | {_ms(value['p99'])} |")
    median = {name: first["stages_s"][name]["p50"] for name, _ in STAGES}
    others = sum(median[n] for n in ("intake", "risk", "access", "enforcer"))
    lines += [
        "",
        f"At the median, evaluation is {median['evaluation'] / median['total']:.0%} of the "
        "total, of which starting and stopping the Inspect process "
        f"{median['evaluation_inspect_process'] / median['total']:.0%} and the eval itself "
        f"{median['evaluation_inspect_eval'] / median['total']:.0%}; intake, risk, access "
        f"and the enforcer together {_ms(others)}.",
    ]
    lines += [
        "",
        "| time to enforce: RestrictionOrdered -> every enforcer applied the version | "
        "p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    for count, run in sorted(lat["by_enforcers"].items(), key=lambda kv: int(kv[0])):
        tte = run["time_to_enforce_ms"]
        lines.append(
            f"| {count} enforcer(s), {run['submissions']} orders | {tte['p50']:.0f} | "
            f"{tte['p99']:.0f} |"
        )
    lines += [
        "",
        "| throughput | escalating (Inspect run each) /s | cleared (no suite applies) /s | "
        "cleared: ratio to raw burst | to the first config (escalating / cleared) |",
        "|---|---|---|---|---|",
        f"| raw aiokafka produce -> consume, burst of {raw['burst_messages']} | - | "
        f"{raw['burst_msgs_per_s']:,.0f} | 1 | - |",
    ]
    runs = list(figures["throughput"].items())
    base = runs[0][1] if runs else None
    for name, run in runs:
        assert base is not None
        lines.append(
            f"| {name}: {run['describe']} | {run['escalating_per_s']:.2f} "
            f"({run['escalating']} in {run['escalating_s']:.1f} s) | "
            f"{run['cleared_per_s']:.1f} ({run['cleared']} in {run['cleared_s']:.1f} s) | "
            f"{run['cleared_per_s'] / raw['burst_msgs_per_s']:.4f} | "
            f"x{run['escalating_per_s'] / base['escalating_per_s']:.2f} / "
            f"x{run['cleared_per_s'] / base['cleared_per_s']:.2f} |"
        )
    inspect_cpu = [r["cpu_ms_per_escalating"].get("inspect_children", 0.0) for _, r in runs]
    if runs and min(inspect_cpu) > 0:
        cores = figures.get("cores") or os.cpu_count() or 1
        lines += [
            "",
            f"An Inspect run costs {min(inspect_cpu) / 1000:.1f}-{max(inspect_cpu) / 1000:.1f} "
            f"CPU s (its child process), so {cores} cores can do at most "
            f"{cores * 1000 / max(inspect_cpu):.2f}-{cores * 1000 / min(inspect_cpu):.2f} "
            "escalating submissions/s whatever the replicas and partitions; each replica's "
            "evaluation worker runs two at a time (`FR_EVALUATION_WORKER_CONCURRENCY`). A "
            "cleared submission costs the four services "
            f"{sum(runs[0][1]['cpu_ms_per_cleared'].get(n, 0.0) for n in SERVICES):.0f} CPU ms "
            f"together (config {runs[0][0]}).",
        ]
    columns = [*SERVICES, "inspect_children"]
    lines += [
        "",
        "| CPU ms per submission: a phase's CPU over its submissions, idle polling included "
        "(all replicas) | " + " | ".join(SERVICES) + " | Inspect runs |",
        "|---|" + "---|" * len(columns),
    ]
    for name, run in runs:
        for kind in ("escalating", "cleared"):
            cpu = run.get(f"cpu_ms_per_{kind}", {})
            cells = " | ".join(f"{cpu[c]:,.0f}" if c in cpu else "-" for c in columns)
            lines.append(f"| {name}, {kind} | {cells} |")
    lines += [
        "",
        "| RSS, MiB (per process; peak under the throughput load) | "
        + " | ".join(SERVICES)
        + " | Inspect child |",
        "|---|" + "---|" * (len(SERVICES) + 1),
    ]
    for name, run in figures["throughput"].items():
        rss = run["rss_mib"]
        rest = " | ".join(f"{rss['rest'][s]:.0f}" for s in SERVICES)
        load = " | ".join(f"{rss['load'][s]:.0f}" for s in SERVICES)
        child = rss["load"].get("inspect_child")
        lines.append(f"| {name}, at rest | {rest} | - |")
        lines.append(f"| {name}, under load | {load} | {f'{child:.0f}' if child else '-'} |")
    return "\n".join(lines) + "\n"


def headline_keys(figures: Mapping[str, Any]) -> dict[str, float]:
    """The headline figures, a key each (beside the nested detail in results.json)."""
    raw = figures["raw"]
    keys: dict[str, float] = {
        "load_average_before": figures["load_before"],
        "load_average_after": figures["load_after"],
        "raw_paced_p50_ms": raw["paced_p50_ms"],
        "raw_paced_p99_ms": raw["paced_p99_ms"],
        "raw_burst_msgs_per_s": raw["burst_msgs_per_s"],
    }
    for count, run in figures["latency"]["by_enforcers"].items():
        for p in ("p50", "p99"):
            keys[f"publish_to_denial_{count}_enforcers_{p}_s"] = run["stages_s"]["total"][p]
            keys[f"time_to_enforce_{count}_enforcers_{p}_ms"] = run["time_to_enforce_ms"][p]
    for name, run in figures["throughput"].items():
        keys[f"escalating_per_s_{name}"] = run["escalating_per_s"]
        keys[f"cleared_per_s_{name}"] = run["cleared_per_s"]
        for when in ("rest", "load"):
            for service, mib in run["rss_mib"][when].items():
                keys[f"rss_{when}_{service}_mib_{name}"] = mib
    return keys


def replace_section(text: str, section: str) -> str:
    """``text`` (RESULTS.md) with its headline section replaced by ``section`` (or, when
    it has none, ``section`` appended): everything from the heading to the next ``## ``
    heading."""
    section = section.rstrip("\n") + "\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(SECTION))
    rest = text[end + 1 :] if end >= 0 else ""
    return text[:start] + section + ("\n" + rest if rest else "")


# --- the machine --------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) / 1024 if match else None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system, seconds) of ``pid`` itself and of its children that
    ended and were waited for (the Inspect runs of an evaluation worker)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    # after the command: state is field 3; utime, stime, cutime, cstime are 14-17
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def cpu_by_service(rig: SystemRig) -> dict[str, float]:
    """CPU seconds so far per service (over its replicas), and of evaluation's ended
    children under ``inspect_children``."""
    totals: dict[str, float] = {}
    for process in rig.processes():
        if process.pid is None:
            continue
        own, children = cpu_seconds(process.pid)
        name = process.settings.service_name
        totals[name] = totals.get(name, 0.0) + own
        if name == "evaluation":
            totals["inspect_children"] = totals.get("inspect_children", 0.0) + children
    return totals


def cpu_per(
    before: Mapping[str, float], after: Mapping[str, float], count: int
) -> dict[str, float]:
    """CPU ms per item of each process between two ``cpu_by_service`` readings."""
    return {k: round((after[k] - before.get(k, 0.0)) * 1000 / count, 1) for k in sorted(after)}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


@dataclass
class Memory:
    """Peak RSS per service (over its replicas' processes) and of the Inspect children."""

    peak: dict[str, float] = field(default_factory=dict)

    def sample(self, rig: SystemRig) -> None:
        for process in rig.processes():
            if process.pid is None:
                continue
            name = process.settings.service_name
            value = rss_mib(process.pid)
            if value is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), value)
            if name == "evaluation":
                for child in descendants(process.pid):
                    value = rss_mib(child)
                    if value is not None:
                        self.peak["inspect_child"] = max(self.peak.get("inspect_child", 0.0), value)

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 1) for name, value in sorted(self.peak.items())}


@contextlib.asynccontextmanager
async def sampling(rig: SystemRig, memory: Memory) -> AsyncIterator[Memory]:
    async def run() -> None:
        while True:
            memory.sample(rig)
            await asyncio.sleep(SAMPLE_EVERY_S)

    task = asyncio.create_task(run())
    try:
        yield memory
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        memory.sample(rig)


# --- the enforcers ------------------------------------------------------------------------


class Timed(Enforcer):
    """An enforcer that notes when it applied each version, and when it first denied
    the foreign national access to each model (checked right after applying)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.applied_at: dict[tuple[str, int], float] = {}
        self.denied_at: dict[str, float] = {}

    def apply(self, published: AccessPolicyPublished) -> ApplyResult:
        result = super().apply(published)
        if result is ApplyResult.APPLIED:
            now = time.time()
            self.applied_at.setdefault((published.model_id, published.policy_version), now)
            decision = self.check(foreign_national(), published.model_id)
            if not decision.allowed and decision.policy_version == published.policy_version:
                self.denied_at.setdefault(published.model_id, time.time())
        return result


def timed(rig: SystemRig) -> list[Timed]:
    return [p.enforcer for p in rig.enforcers if isinstance(p.enforcer, Timed)]


def model_of(manifest: Mapping[str, Any]) -> str:
    model = manifest["model"]
    return make_model_id(manifest["lab_id"], model["name"], model["version"])


# --- reading back what happened -----------------------------------------------------------


async def first_records(
    rig: SystemRig, topic: str, types: Iterable[str], *, by_key: bool = False
) -> dict[str, float]:
    """The earliest record timestamp (epoch s) of ``types`` on ``topic``, by subject (or
    record key)."""
    wanted = set(types)
    found: dict[str, float] = {}
    for record in await read_all(rig, rig.topic(topic)):
        try:
            document = json.loads(record.value or b"")
        except ValueError:
            continue
        if not isinstance(document, dict) or document.get("type") not in wanted:
            continue
        key = (record.key or b"").decode() if by_key else str(document.get("subject"))
        at = record.timestamp / 1000
        found[key] = min(found.get(key, at), at)
    return found


async def latency_stamps(
    rig: SystemRig, published: Mapping[str, tuple[float, str]], enforcers: Sequence[Timed]
) -> list[Stamps]:
    """The Stamps of each submission (id -> (publish time, model id)), read back from
    the topics, evaluation's attempts and the enforcers."""
    accepted = await first_records(rig, "intake.events", [SubmissionAccepted.TYPE])
    evaluated = await first_records(
        rig, "evaluation.events", [FindingRecorded.TYPE, EvaluationCompleted.TYPE]
    )
    ordered = await first_records(rig, "risk.events", [RestrictionOrdered.TYPE])
    policies = await first_records(
        rig, f"labs.{LAB_ID}.policies", [AccessPolicyPublished.TYPE], by_key=True
    )
    attempts = {
        str(r["submission_id"]): r
        for r in await rig.fetch(
            "evaluation",
            "SELECT DISTINCT ON (j.submission_id) j.submission_id, a.started_at, a.ended_at, "
            "a.inspect_seconds FROM job_attempts a JOIN jobs j USING (job_id) "
            "WHERE a.inspect_seconds IS NOT NULL ORDER BY j.submission_id, a.started_at",
        )
    }
    stamps = []
    for sid, (at, model) in published.items():
        attempt = attempts[sid]
        stamps.append(
            Stamps(
                published=at,
                accepted=accepted[sid],
                attempt_started=attempt["started_at"].timestamp(),
                attempt_ended=attempt["ended_at"].timestamp(),
                inspect_s=float(attempt["inspect_seconds"]),
                evaluated=evaluated[sid],
                ordered=ordered[sid],
                policy=policies[model],
                applied=[e.applied_at[(model, 1)] for e in enforcers],
                denied=min(e.denied_at[model] for e in enforcers),
            )
        )
    return stamps


# --- the stages ---------------------------------------------------------------------------


def base_settings() -> RuntimeSettings:
    """What the system tests start from (tests/conftest.py): the test principal, whose
    ACLs cover ``test.``; the rig adds a prefix of its own below it."""
    return RuntimeSettings(
        topic_prefix="test.",
        handler_retry_backoff_s=0.01,
        relay_poll_interval_s=0.2,
        transient_retry_s=0.2,
        timer_poll_s=0.2,
        log_json=False,
    )


@contextlib.asynccontextmanager
async def rig_for(
    directory: Path, demo_url: str, config: Config = Config(1)
) -> AsyncIterator[SystemRig]:
    await asyncio.to_thread(directory.mkdir, parents=True)
    async with system_rig(
        base_settings(),
        directory,
        demo_url,
        labs=[Lab(LAB_ID, "k1")],
        seconds_per_day=SECONDS_PER_DAY,
        replicas=config.replicas,
        partitions=config.partitions,
    ) as rig:
        try:
            yield rig
        except BaseException:
            print(rig.logs(), file=sys.stderr)
            raise


async def wait_denied(enforcers: Sequence[Timed], models: Iterable[str], timeout: float) -> None:
    models = list(models)

    async def done() -> bool:
        return all(m in e.denied_at for e in enforcers for m in models)

    await poll(done, timeout=timeout, every=0.01, what=f"{len(models)} models denied")


async def latency(rig: SystemRig, submissions: int, counts: Sequence[int]) -> dict[str, Any]:
    """Per enforcer count: ``submissions`` filed one at a time, each until every enforcer
    denies the foreign national."""
    by_count: dict[str, Any] = {}
    async with rig.lab_client(LAB_ID) as client:
        for count in counts:
            while len(timed(rig)) < count:
                await rig.follow_policies(suffix=f"-{len(timed(rig)) + 1}", kind=Timed)
            enforcers = timed(rig)[:count]
            published: dict[str, tuple[float, str]] = {}
            for _ in range(submissions):
                manifest = rig.manifest(LAB_ID, profile="capable")
                model = model_of(manifest)
                at = time.time()
                await client.submit(manifest)
                published[manifest["submission_id"]] = (at, model)
                await wait_denied(enforcers, [model], timeout=180)
                await asyncio.sleep(0.5)
            stamps = await latency_stamps(rig, published, enforcers)
            by_count[str(count)] = {
                "enforcers": count,
                "submissions": submissions,
                "stages_s": breakdown(stamps),
                "time_to_enforce_ms": time_to_enforce_ms(stamps),
            }
            total = by_count[str(count)]["stages_s"]["total"]
            tte = by_count[str(count)]["time_to_enforce_ms"]
            print(
                f"latency, {count} enforcer(s): publish -> denied p50 {total['p50']:.2f} s, "
                f"p99 {total['p99']:.2f} s; time to enforce p50 {tte['p50']:.0f} ms, "
                f"p99 {tte['p99']:.0f} ms",
                flush=True,
            )
    return {"by_enforcers": by_count}


async def raw(rig: SystemRig, paced: int) -> dict[str, Any]:
    """Raw aiokafka on the rig's broker: paced (latency), then a burst (throughput)."""
    settings = rig.settings.intake
    slow = await raw_baseline(settings, tick, paced, RAW_PACED_RATE)
    burst = await raw_baseline(settings, tick, RAW_BURST)
    figures = {
        "paced_messages": paced,
        "paced_rate_per_s": RAW_PACED_RATE,
        "paced_p50_ms": round(slow.percentile(50), 2),
        "paced_p99_ms": round(slow.percentile(99), 2),
        "burst_messages": RAW_BURST,
        "burst_msgs_per_s": round(burst.throughput),
    }
    print(f"raw: {figures}", flush=True)
    return figures


def plan(rig: SystemRig, count: int, kind: Kind) -> list[Intended]:
    """``count`` submissions of the lab: text models (an Inspect run each, escalated) for
    Kind.PENDING, image-only models (no suite applies) for Kind.CLEARED."""
    planned = []
    for _ in range(count):
        manifest = rig.manifest(
            LAB_ID, modalities=["text"] if kind.evaluated else ["image"], review_days=30
        )
        planned.append(Intended(uuid.UUID(manifest["submission_id"]), LAB_ID, kind, manifest))
    return planned


async def filed(rig: SystemRig, planned: Sequence[Intended]) -> float:
    """File ``planned`` at once (the workload's filer, unpaced); returns the start."""
    started = time.time()
    await file_all(rig, planned, [], rate=1_000_000.0, filing=Filing())
    return started


async def access_read_everything(rig: SystemRig, planned: Sequence[Intended]) -> None:
    """Wait until risk applied every evaluation of ``planned`` and published what came of
    it, and access's consumer group committed past every record on risk.events."""
    ids = [p.submission_id for p in planned]

    async def risk_done() -> bool:
        done = await rig.fetchval(
            "risk",
            "SELECT count(*) FROM reviews WHERE submission_id = ANY($1) "
            "AND evaluation_ended IS NOT NULL",
            ids,
        )
        pending = await rig.fetchval(
            "risk", "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return bool(done == len(ids) and pending == 0)

    await poll(risk_done, timeout=600, every=0.1, what="risk to assess every cleared submission")
    last: dict[TopicPartition, int] = {}
    for record in await read_all(rig, rig.topic("risk.events")):
        tp = TopicPartition(record.topic, record.partition)
        last[tp] = max(last.get(tp, -1), record.offset)
    group = rig.settings.access.topic_prefix + consumer_group("access", "risk.events")
    admin = AIOKafkaAdminClient(**rig.settings.access.kafka_options())
    await admin.start()
    try:

        async def committed() -> bool:
            offsets = await admin.list_consumer_group_offsets(group)
            return all(tp in offsets and offsets[tp].offset > o for tp, o in last.items())

        await poll(committed, timeout=120, every=0.1, what="access to read risk.events")
    finally:
        await admin.close()


async def throughput(
    rig: SystemRig, config: Config, escalating: int, cleared: int
) -> dict[str, Any]:
    await rig.follow_policies(kind=Timed)
    await asyncio.sleep(3.0)  # started and idle: consumer groups settled
    rest = Memory()
    rest.sample(rig)
    load = Memory()
    async with sampling(rig, load):
        hot = plan(rig, escalating, Kind.PENDING)
        cpu_start = cpu_by_service(rig)
        started = await filed(rig, hot)
        await wait_denied(timed(rig), [model_of(p.manifest) for p in hot], timeout=900)
        escalating_s = max(timed(rig)[0].denied_at[model_of(p.manifest)] for p in hot) - started
        await asyncio.sleep(1.0)  # the last runs' children reaped
        cpu_hot = cpu_by_service(rig)
        cold = plan(rig, cleared, Kind.CLEARED)
        started = await filed(rig, cold)
        await access_read_everything(rig, cold)
        cleared_s = time.time() - started
        cpu_cold = cpu_by_service(rig)
    figures = {
        "describe": config.describe(),
        "replicas": config.replicas,
        "partitions": config.partitions or 6,
        "escalating": escalating,
        "escalating_s": round(escalating_s, 2),
        "escalating_per_s": round(escalating / escalating_s, 3),
        "cleared": cleared,
        "cleared_s": round(cleared_s, 2),
        "cleared_per_s": round(cleared / cleared_s, 1),
        "rss_mib": {"rest": rest.rounded(), "load": load.rounded()},
        "cpu_ms_per_escalating": cpu_per(cpu_start, cpu_hot, escalating),
        "cpu_ms_per_cleared": cpu_per(cpu_hot, cpu_cold, cleared),
    }
    print(f"throughput {config.name}: {figures}", flush=True)
    return figures


async def stage(name: str, work: Any) -> Any:
    print(f"headline: {name} ...", flush=True)
    try:
        return await work
    except Exception as exc:
        raise Failed(name, exc) from exc


async def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    load_before = load_average()
    figures: dict[str, Any] = {"load_before": load_before}
    with demo_model_server(DEMO_API_KEY) as demo_url, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        async def first() -> None:
            async with rig_for(directory / "latency", demo_url) as rig:
                figures["raw"] = await stage("raw baseline", raw(rig, args.raw_paced))
                figures["latency"] = await stage(
                    "latency", latency(rig, args.latency, args.enforcers)
                )

        await stage("latency rig", first())
        figures["throughput"] = {}
        for config in args.configs:

            async def one(config: Config = config) -> None:
                async with rig_for(
                    directory / f"throughput-{config.name}", demo_url, config
                ) as rig:
                    figures["throughput"][config.name] = await stage(
                        f"throughput {config.name}",
                        throughput(rig, config, args.escalating, args.cleared),
                    )

            await stage(f"throughput rig {config.name}", one())
    figures["load_after"] = load_average()
    figures["run_seconds"] = round(time.monotonic() - began, 1)
    return figures


def arguments_text(args: argparse.Namespace) -> str:
    return (
        f"--latency {args.latency} --enforcers {' '.join(map(str, args.enforcers))} "
        f"--escalating {args.escalating} --cleared {args.cleared} "
        f"--configs {' '.join(c.name for c in args.configs)}"
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite RESULTS.md and results.json")
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument("--latency", type=int, default=12, help="submissions per enforcer count")
    parser.add_argument("--enforcers", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--escalating", type=int, default=12, help="per throughput config")
    parser.add_argument("--cleared", type=int, default=300, help="per throughput config")
    parser.add_argument("--raw-paced", type=int, default=200, help="raw records at 20/s")
    parser.add_argument(
        "--configs",
        type=Config.parse,
        nargs="+",
        default=[Config.parse(c) for c in ("1", "2", "1x12", "2x12")],
    )
    parser.add_argument("--load-note", default="", help="what else ran on the machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.latency, args.enforcers, args.escalating, args.cleared = 3, [1, 2], 3, 40
        args.raw_paced, args.configs = 60, [Config(1), Config(2, 12)]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    print(f"machine: {machine()}", flush=True)
    try:
        figures = asyncio.run(run(args))
    except Failed as failure:
        traceback.print_exception(failure.cause)
        print(f"headline: FAILED: {failure.stage}", flush=True)
        return 1
    figures["arguments"] = arguments_text(args)
    figures["machine"] = machine()
    figures["cores"] = os.cpu_count()
    figures["load_note"] = args.load_note or (
        "a quiet machine" if figures["load_after"] < 2 else "a machine shared with other work"
    )
    section = render(figures)
    print("\n" + section)
    if args.write:
        RESULTS_MD.write_text(replace_section(RESULTS_MD.read_text(), section))
        record_results("headline", headline_keys(figures) | {"detail": figures})
        print(f"headline: wrote {RESULTS_MD.name} and results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
