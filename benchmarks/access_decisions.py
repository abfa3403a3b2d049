"""In-process access decisions and the impact preview, against bare cedarpy, in one run.

    .venv/bin/python -m benchmarks.access_decisions [--principals 20000] [--rows 1000000]

- baseline: ``cedarpy.is_authorized`` with the pre-parsed ``PolicySet``, a
  pre-parsed ``Entities`` handle per principal (built before timing) and the
  parsed schema: the engine alone;
- uncached: ``LoadedPolicy.decide(use_cache=False)``: derivation of the
  entities at t, request building, Cedar, reasons;
- enforcer, cold: ``Enforcer.check`` over distinct principals with an empty
  cache (hits only where projected keys coincide);
- enforcer, warm: the same principals again;
- preview: ``preview_impact`` over a generated CSV of ``--rows`` rows on disk.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path

import cedarpy

from benchmarks.common import record_results
from contracts.policy import Action, cedar
from contracts.policy.entities import cedar_request, derive
from services.access.preview import ImpactReport, preview_impact
from services.access.sample import SampleFormat
from services.labclient.enforcer import Enforcer
from tests.access.generate import csv_sample, customer_csv, customer_row, random_row
from tests.access.support import GROUPS, LAB, MODEL, T0, loaded, order, published

AT = T0 + timedelta(hours=1)


def orders() -> list:  # type: ignore[type-arg]
    return [
        order(
            nationalities=["CN", "RU"],
            country_groups=["tier3"],
            nationality_rule="most_recent",
            exemptions=[{"kind": "organisation", "id": "org-1", "reason": "licensed partner"}],
        ),
        order(
            verification_statuses=["unverified"],
            organisations=["org-x"],
            request_locations=["KP", "IR"],
        ),
    ]


def timed(calls: Sequence[Callable[[], object]]) -> dict[str, float]:
    samples = []
    start = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    total = time.perf_counter() - start
    samples.sort()
    return {
        "n": len(samples),
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
        "per_s": len(samples) / total,
    }


def decisions(principals: int, *, adversarial: bool) -> dict[str, dict[str, float]]:
    rng = random.Random(11)
    make = random_row if adversarial else customer_row
    rows = [make(rng, i) for i in range(principals)]
    policy = loaded(*orders())
    schema = cedar.schema()
    prepared = []
    for principal, request in rows:
        req, entities = cedar_request(
            principal.id, derive(principal, request, AT), MODEL, Action.INVOKE, AT
        )
        prepared.append((req, cedarpy.Entities.from_json_str(entities)))
    results: dict[str, dict[str, float]] = {}
    ps = policy.policy_set
    results["bare cedarpy.is_authorized (pre-parsed PolicySet + Entities, schema)"] = timed(
        [partial(cedarpy.is_authorized, r, ps, e, schema) for r, e in prepared]
    )
    results["bare cedarpy.is_authorized (pre-parsed PolicySet + Entities, no schema)"] = timed(
        [partial(cedarpy.is_authorized, r, ps, e) for r, e in prepared]
    )
    results["LoadedPolicy.decide, uncached"] = timed(
        [partial(policy.decide, p, Action.INVOKE, q, AT, use_cache=False) for p, q in rows]
    )
    enforcer = Enforcer(lab_id=LAB, clock=lambda: AT)
    enforcer.apply(published(*orders()))
    enforcer.mark_caught_up()
    checks = [partial(enforcer.check, p, MODEL, Action.INVOKE, q) for p, q in rows]
    results["Enforcer.check, cold cache (distinct principals)"] = timed(checks)
    results["Enforcer.check, warm cache (same principals again)"] = timed(checks)
    loaded_policy = enforcer._entries[MODEL].policy
    assert loaded_policy is not None
    results["cache"] = {
        "entries": len(loaded_policy._cache),
        "hits": loaded_policy.hits,
        "misses": loaded_policy.misses,
    }
    return results


def preview(rows: int, *, adversarial: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.csv"
        t0 = time.perf_counter()
        with path.open("wb") as out:
            for line in (csv_sample if adversarial else customer_csv)(rows, seed=5):
                out.write(line)
        generated = time.perf_counter() - t0
        first, second = orders()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        with path.open("rb") as handle:
            report = preview_impact(
                second, [first], handle, fmt=SampleFormat.CSV, groups=GROUPS, at=AT
            )
        elapsed = time.perf_counter() - t0
        assert isinstance(report, ImpactReport)
        return {
            "rows": report.rows,
            "bytes": path.stat().st_size,
            "generate_s": generated,
            "preview_s": elapsed,
            "rows_per_s": report.rows / elapsed,
            "newly_denied": report.newly_denied,
            "max_rss_mib_before": rss_before / 1024,
            "max_rss_mib_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--principals", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    figures: dict[str, object] = {}
    for adversarial in (False, True):
        sample = "adversarial (uniformly random attributes)" if adversarial else "customers"
        result = decisions(args.principals, adversarial=adversarial)
        figures[f"decisions, {sample}"] = result
        print(json.dumps({f"decisions, {sample}": result}, indent=2), flush=True)
    customers = preview(args.rows, adversarial=False)
    figures["preview, customers"] = customers
    print(json.dumps({"preview, customers": customers}, indent=2), flush=True)
    small = max(args.rows // 50, 1000)
    adversarial_preview = preview(small, adversarial=True)
    figures["preview, adversarial"] = adversarial_preview
    print(json.dumps({"preview, adversarial": adversarial_preview}, indent=2), flush=True)
    record_results("access_decisions", figures)


if __name__ == "__main__":
    main()
