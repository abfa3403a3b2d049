"""One submission through the whole system is one OpenTelemetry trace.

A lab files a signed submission (its client's publish is the trace's root); intake
accepts it; evaluation runs the shipped cyber proxy suite (three samples, a real
Inspect run of the demo lab model's ``capable`` profile over HTTP); risk finds critical
cyber capability, escalates and orders the interim restriction; access publishes the
model's Cedar policy; the lab's enforcer applies it and denies a foreign national.
Every service exports its spans (SQL statements included) to a JSON-lines file of the
test; the trace must run unbroken, through every outbox hop, from the lab's publish to
the access handler that wrote the policy, and each hop's relay transaction (a span of
its own) must link to the span that wrote the record it published.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.events import SubmissionAccepted
from contracts.policy import Principal
from services.runtime import RuntimeSettings
from tests.kit import wait_for
from tests.system.rig import SERVICES, Lab, foreign_national, registry_file, running_system
from tests.system.traces import Link, Span, ancestry, from_sdk, read_spans

LAB_ID = "lab-trace"
# The path of the policy back to the lab, one (service, span kind, topic) per Kafka hop:
# each PRODUCER but the lab's is a relay transaction linked to the span that wrote the row.
EXPECTED_HOPS = [
    ("lab", "PRODUCER", "lab.submissions"),
    ("intake", "CONSUMER", "lab.submissions"),
    ("intake", "PRODUCER", "intake.events"),
    ("evaluation", "CONSUMER", "intake.events"),
    ("evaluation", "PRODUCER", "evaluation.events"),
    ("risk", "CONSUMER", "evaluation.events"),
    ("risk", "PRODUCER", "risk.events"),
    ("access", "CONSUMER", "risk.events"),
    ("access", "PRODUCER", "access.policies"),
]


def verified_us_person() -> Principal:
    """The interim order also denies anyone unverified: this customer is verified."""
    today = datetime.now(UTC)
    return Principal.model_validate(
        {
            "id": "customer-us",
            "citizenships": [{"country": "US"}],
            "permanent_residencies": [],
            "residence_country": "US",
            "us_person": "citizen",
            "verification": {
                "status": "verified",
                "verified_at": (today - timedelta(days=30)).isoformat(),
                "expires_at": (today + timedelta(days=300)).isoformat(),
            },
            "organisation": "none",
        }
    )


async def test_one_submission_is_one_trace_from_the_labs_publish_to_the_policy_it_enforces(
    settings: RuntimeSettings, kafka: str, database: str, demo_url: str, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    lab_tracing = TracerProvider(resource=Resource.create({"service.name": "lab"}))
    lab_tracing.add_span_processor(SimpleSpanProcessor(exporter))
    suites = registry_file(tmp_path, shipped=["cyber-ctf-proxy"])
    async with running_system(
        settings,
        tmp_path,
        demo_url,
        labs=[Lab(LAB_ID, "k1")],
        seconds_per_day=86_400,
        traced=True,
        suites=suites,
    ) as rig:
        await rig.follow_policies()
        enforcer = rig.enforcers[0].enforcer
        async with rig.lab_client(LAB_ID, tracer_provider=lab_tracing) as client:
            sent = await client.submit(rig.manifest(LAB_ID, profile="capable"))
            outcome = await client.outcome(sent, within_s=60)
        assert outcome.status == "accepted", outcome.summary
        assert isinstance(outcome.event.data, SubmissionAccepted)
        model_id = outcome.event.data.model_id

        async def enforced() -> bool:
            return enforcer.applied(model_id) is not None

        await wait_for(enforced, timeout=240, what=f"a policy of {model_id} at the enforcer")
        assert not enforcer.check(foreign_national(), model_id).allowed
        assert enforcer.check(verified_us_person(), model_id).allowed
        for process in rig.processes():
            await process.stop()  # a graceful stop flushes each service's spans

    lab_spans = from_sdk(exporter.get_finished_spans())
    (root,) = [s for s in lab_spans if s.kind == "PRODUCER"]
    everything = lab_spans + read_spans(tmp_path)
    spans = [s for s in everything if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in spans}
    prefix = rig.settings.intake.topic_prefix
    relays = [s for s in everything if s.kind == "PRODUCER" and s.links]

    def hop(span: Span) -> tuple[str, str, str]:
        return (span.service, span.kind, (span.destination or "").removeprefix(prefix))

    def into_the_trace(topic: str) -> list[tuple[Span, Link]]:
        """Relay transactions' links to spans of the lab's trace that wrote to ``topic``."""
        return [
            (relay, link)
            for relay in relays
            for link in relay.links
            if link.trace_id == root.trace_id
            and link.attributes.get("messaging.destination.name") == prefix + topic
        ]

    def published(writer: Span, topic: str) -> tuple[str, str, str]:
        """The relay transaction that published what ``writer`` wrote to ``topic``."""
        found = [
            (relay.service, relay.kind, topic)
            for relay, link in into_the_trace(topic)
            if link.span_id == writer.span_id
        ]
        assert found, f"no relay transaction links {writer} for {topic}"
        return found[0]

    assert {"lab", *SERVICES} <= {s.service for s in spans}, sorted({str(s) for s in spans})
    policy = [
        by_id[link.span_id]
        for _, link in into_the_trace("access.policies")
        if link.span_id in by_id
    ]
    assert policy, "no relay transaction of access.policies links to the lab's trace"
    chain, missing = ancestry(policy[0], by_id)
    assert missing is None, f"the trace breaks above {chain[-1]}: parent {missing} is missing"
    assert chain[-1] == root, f"the policy's trace starts at {chain[-1]}, not the lab's publish"
    path = list(reversed(chain))
    hops = [hop(root)]
    for span in path:
        if span.kind != "CONSUMER":
            continue
        topic = hop(span)[2]
        if span.parent_id != root.span_id:  # the record came through a service's relay
            hops.append(published(by_id[span.parent_id or ""], topic))
        hops.append(hop(span))
    hops.append(published(policy[0], "access.policies"))
    assert hops == EXPECTED_HOPS
    assert any(s.name.startswith("evaluation job ") for s in path), "no evaluation run on the path"
    lab_feed = f"labs.{LAB_ID}.policies"
    assert any(relay.service == "access" for relay, _ in into_the_trace(lab_feed)), (
        "no relay transaction of the lab's feed links to the lab's trace"
    )
    database_work = {s.service for s in spans if s.database}
    assert set(SERVICES) <= database_work, f"database spans only from {sorted(database_work)}"
