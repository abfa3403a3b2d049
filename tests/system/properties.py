"""What must hold after a system test's run, whatever struck it (tests/system/scenario.py).

Each function returns the problems it found (an empty list: the property holds), read
from the run's snapshot: every record of every topic, the services' tables, what each
enforcer applied. The test modules assert each property in a test of its own.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from contracts.registry import TOPICS
from services.access.app import build_service as build_access
from services.evaluation.app import build_service as build_evaluation
from services.intake.app import build_service as build_intake
from services.risk.app import build_service as build_risk
from services.runtime import Service
from tests.system.scenario import Run
from tests.system.workload import Kind

EXPECTED_OUTCOME = {
    Kind.CLEARED: "concluded:cleared",
    Kind.REFILED: "concluded:cleared",
    Kind.CONFIRMED: "concluded:restrictions_ordered",
    Kind.DISMISSED: "concluded:cleared",
    Kind.PENDING: "concluded:pending_review",
    Kind.REJECTED: "rejected",
    Kind.WITHDRAWN: "withdrawn",
}
TYPE = "frontier_review.{}"
# Agency topics written through the services' outboxes (the rest are written from outside).
OUTBOX_TOPICS = [t.name for t in TOPICS if t.producer not in ("lab", "evaluators", "reviewers")]


def short(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Event:
    """A record of an agency topic that is a CloudEvent, as parsed."""

    partition: int
    offset: int
    key: str
    id: str
    type: str
    source: str
    data: dict[str, Any]

    @property
    def submission_id(self) -> str | None:
        value = self.data.get("submission_id")
        return str(value) if value is not None else None


def events(run: Run, topic: str) -> list[Event]:
    """The CloudEvents on ``topic`` in topic order (poison and other bytes skipped)."""
    poison = {p.value for p in run.poison}
    found = []
    for record in run.topics[topic]:
        if record.value in poison:
            continue
        try:
            document = json.loads(record.value or b"")
        except ValueError:
            continue
        if not isinstance(document, dict) or "type" not in document:
            continue
        found.append(
            Event(
                record.partition,
                record.offset,
                (record.key or b"").decode(),
                document["id"],
                short(document["type"]),
                document.get("source", ""),
                document.get("data") or {},
            )
        )
    return sorted(found, key=lambda e: (e.partition, e.offset))


def _lab_feeds(run: Run, suffix: str) -> list[str]:
    return [f"labs.{lab}.{suffix}" for lab in run.rig.labs]


# --- outcomes -----------------------------------------------------------------------------


def outcomes_on(run: Run, topics: Iterable[str]) -> dict[str, list[str]]:
    """Each submission's terminal events on ``topics``: rejected (an answer bound to it),
    withdrawn, concluded:<outcome>."""
    found: dict[str, list[str]] = defaultdict(list)
    for topic in topics:
        for event in events(run, topic):
            sid = event.submission_id
            if sid is None or event.data.get("duplicate_event_id"):
                continue  # a copy answering a duplicate is no outcome of its own
            if event.type == "SubmissionRejected":
                found[sid].append("rejected")
            elif event.type == "SubmissionWithdrawn":
                found[sid].append("withdrawn")
            elif event.type == "ReviewConcluded":
                found[sid].append(f"concluded:{event.data['outcome']}")
    return found


def terminal_outcomes(run: Run) -> list[str]:
    """Every planned submission has exactly one terminal outcome, the one its kind
    leads to, on the agency's topics and in the services' tables."""
    found = outcomes_on(run, ["intake.events", "risk.events"])
    states = {str(r["submission_id"]): r["state"] for r in run.tables["intake"]["submissions"]}
    concluded = {str(r["submission_id"]): r["outcome"] for r in run.tables["risk"]["conclusions"]}
    problems = []
    for planned in run.planned:
        sid = str(planned.submission_id)
        expected = EXPECTED_OUTCOME[planned.kind]
        if found.get(sid) != [expected]:
            problems.append(f"{planned.kind} {sid}: outcomes {found.get(sid)}, not [{expected}]")
        state = {"rejected": "rejected", "withdrawn": "withdrawn"}.get(expected, "closed")
        if states.get(sid) != state:
            problems.append(f"{planned.kind} {sid}: intake state {states.get(sid)}, not {state}")
        if expected.startswith("concluded:") != (sid in concluded):
            problems.append(f"{planned.kind} {sid}: risk's conclusion {concluded.get(sid)}")
    planned_ids = {str(p.submission_id) for p in run.planned}
    strangers = sorted(set(states) - planned_ids)
    if strangers:
        problems.append(f"intake holds submissions nobody filed: {strangers[:5]}")
    return problems


def lab_feed_outcomes(run: Run) -> list[str]:
    """Each lab hears its submissions' outcomes once, on its own answers feed; a re-filed
    submission's duplicate is answered with one copy of the acceptance, bound to it."""
    problems = []
    for lab_id in run.rig.labs:
        feed = f"labs.{lab_id}.answers"
        found = outcomes_on(run, [feed])
        on_feed = events(run, feed)
        accepted = Counter(
            e.submission_id
            for e in on_feed
            if e.type == "SubmissionAccepted" and not e.data.get("duplicate_event_id")
        )
        copies = Counter(e.submission_id for e in on_feed if e.data.get("duplicate_event_id"))
        for planned in run.planned:
            sid = str(planned.submission_id)
            if planned.lab_id != lab_id:
                if sid in found:
                    problems.append(f"{feed} carries {sid} of {planned.lab_id}")
                continue
            expected = EXPECTED_OUTCOME[planned.kind]
            if found.get(sid) != [expected]:
                problems.append(f"{feed}: {sid} ({planned.kind}) heard {found.get(sid)}")
            wanted = 0 if planned.kind is Kind.REJECTED else 1
            if accepted[sid] != wanted:
                problems.append(f"{feed}: {sid} accepted {accepted[sid]} times")
            refiled = 1 if planned.kind is Kind.REFILED else 0
            if copies[sid] != refiled:
                problems.append(f"{feed}: {sid} ({planned.kind}) got {copies[sid]} copies")
    return problems


# --- exactly once ---------------------------------------------------------------------------


def dead_letter_id(record: ConsumerRecord[bytes, bytes]) -> str:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    origin = "/".join(headers[f"dlq.origin.{part}"] for part in ("topic", "partition", "offset"))
    return f"dlq:{headers['dlq.consumer']}:{origin}"


def published_once(run: Run) -> list[str]:
    """Every outbox row marked published is on its topic exactly once, and nothing else
    (but the harness's poison) is: no event lost between outbox and topic, none twice."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)  # marked published
    written: dict[str, set[str]] = defaultdict(set)  # every outbox row
    unpublished: list[str] = []
    for service, tables in run.tables.items():
        for row in tables["outbox"]:
            written[row["topic"]].add(row["event_id"])
            if row["published"]:
                rows[row["topic"]][row["event_id"]] += 1
            elif not row["topic"].endswith("gov.audit"):  # a checkpoint at shutdown may wait
                unpublished.append(f"{service}: {row['topic']} {row['event_id']}")
    problems = [f"left unpublished: {u}" for u in unpublished[:10]]
    poison = {p.value for p in run.poison}
    names = OUTBOX_TOPICS + [t.dlq for t in TOPICS] + _lab_feeds(run, "answers")
    names += _lab_feeds(run, "policies")
    for name in names:
        topic = run.prefixed(name)
        if name.endswith(".dlq"):
            on_topic = Counter(dead_letter_id(r) for r in run.topics[name])
        else:
            on_topic = Counter(
                json.loads(r.value or b"")["id"] for r in run.topics[name] if r.value not in poison
            )
        twice = [i for i, n in on_topic.items() if n > 1]
        if twice:
            problems.append(f"{name}: {len(twice)} events twice, e.g. {twice[:3]}")
        lost = set(rows[topic]) - set(on_topic)
        if lost:
            problems.append(
                f"{name}: {len(lost)} published rows not on the topic: {sorted(lost)[:3]}"
            )
        # A row the relay published and had not marked yet when its service stopped (a
        # checkpoint at shutdown) is on the topic: its successor's reconcile marks it.
        foreign = set(on_topic) - written[topic]
        if foreign:
            problems.append(f"{name}: {len(foreign)} records from no outbox: {sorted(foreign)[:3]}")
    return problems


def consumers(run: Run) -> list[tuple[str, str, str, frozenset[str]]]:
    """(service, consumer group, topic, handled event types) as each app wires them."""
    settings = run.rig.settings
    built: list[tuple[str, Service]] = [
        ("intake", build_intake(settings.intake)),
        (
            "evaluation",
            build_evaluation(
                settings.evaluation.model_copy(update={"evaluation_worker_enabled": False})
            ),
        ),
        ("risk", build_risk(settings.risk)),
        ("access", build_access(settings.access)),
    ]
    return [
        (name, c.group, c.topic, frozenset(c.handlers))
        for name, service in built
        for c in service.consumers
    ]


def applied_once(run: Run) -> list[str]:
    """Each consumer applied every event it handles exactly once (one inbox row, whose
    primary key refuses a second), and the services' tables count each effect once."""
    problems = []
    prefix = run.rig.settings.intake.topic_prefix
    for service, group, topic, handled in consumers(run):
        name = topic.removeprefix(prefix)
        inbox = Counter(
            (r["topic"], r["partition"], r["offset"])
            for r in run.tables[service]["inbox"]
            if r["consumer"] == group
        )
        claimed = {r["event_id"] for r in run.tables[service]["inbox"] if r["consumer"] == group}
        if name in (
            "lab.submissions",
            "lab.compliance",
            "reviewers.decisions",
            "evaluators.findings",
        ):
            # Input from outside is claimed by position: every record, once.
            positions = {(topic, r.partition, r.offset) for r in run.topics[name]}
            if set(inbox) != positions:
                problems.append(
                    f"{group}: {len(positions - set(inbox))} records of {name} never claimed"
                )
            continue
        wanted = [e for e in events(run, name) if e.type in {short(t) for t in handled}]
        missing = [e.id for e in wanted if e.id not in claimed]
        if missing:
            problems.append(f"{group}: {len(missing)} events of {name} not applied: {missing[:3]}")
    problems += _domain_counts(run)
    return problems


def _domain_counts(run: Run) -> list[str]:
    tables = run.tables
    problems = []
    accepted = [p for p in run.planned if p.kind is not Kind.REJECTED]
    evaluated = [p for p in run.planned if p.kind.evaluated]

    def expect(what: str, got: int, wanted: int) -> None:
        if got != wanted:
            problems.append(f"{what}: {got}, expected {wanted}")

    expect("intake submissions", len(tables["intake"]["submissions"]), len(run.planned))
    duplicates = Counter(
        str(r["submission_id"]) for r in tables["intake"]["history"] if r["kind"] == "duplicate"
    )
    for planned in run.planned:
        wanted = 1 if planned.kind is Kind.REFILED else 0
        recorded = duplicates[str(planned.submission_id)]
        if recorded != wanted:
            problems.append(f"{planned.submission_id}: {recorded} duplicates recorded")
    expect("evaluations", len(tables["evaluation"]["evaluations"]), len(accepted))
    expect("evaluation jobs", len(tables["evaluation"]["jobs"]), len(evaluated))
    expect("risk reviews", len(tables["risk"]["reviews"]), len(accepted))
    concluded = [p for p in accepted if p.kind is not Kind.WITHDRAWN]
    expect("risk conclusions", len(tables["risk"]["conclusions"]), len(concluded))
    expect("risk escalations", len(tables["risk"]["escalations"]), len(evaluated))
    ordered = [e for e in events(run, "risk.events") if e.type == "RestrictionOrdered"]
    expect("risk orders", len(tables["risk"]["orders"]), len(ordered))
    expect("access orders", len(tables["access"]["orders"]), len(ordered))
    confirmed = [p for p in run.planned if p.kind is Kind.CONFIRMED]
    expect("orders issued", len(ordered), len(evaluated) + len(confirmed))
    # One entry per effect, told apart by what it is about (an order, an assessment, an
    # escalation, a policy version); each reviewer's decision is an entry of its own.
    audit = Counter((r["kind"], r["subject"], r["about"]) for r in tables["risk"]["audit"])
    for (kind, subject, about), n in audit.items():
        if n > 1 and kind not in ("decision_accepted", "decision_refused"):
            problems.append(f"audit: {kind} of {subject} ({about}) recorded {n} times")
    issued = sum(n for (kind, _, _), n in audit.items() if kind == "order_issued")
    expect("audit order_issued entries", issued, len(ordered))
    policies = Counter(e.data["model_id"] for e in events(run, "access.policies"))
    versions = Counter(r["model_id"] for r in tables["access"]["policies"])
    if policies != versions:
        problems.append(
            f"access: {sum(versions.values())} versions, "
            f"{sum(policies.values())} on access.policies"
        )
    return problems


# --- order --------------------------------------------------------------------------------


def order_kept(run: Run) -> list[str]:
    """On every topic, each key's events are in the order their service wrote them (the
    outbox ids), and the sequences the events carry only go up."""
    problems = []
    written: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for service, tables in run.tables.items():
        for row in sorted(tables["outbox"], key=lambda r: r["id"]):
            if row["published"] and not row["topic"].endswith(".dlq"):
                written[(row["topic"], service, bytes(row["key"] or b"").decode())].append(
                    row["event_id"]
                )
    names = OUTBOX_TOPICS + _lab_feeds(run, "answers") + _lab_feeds(run, "policies")
    for name in names:
        read: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for event in events(run, name):
            writer = event.source.rsplit("/", 1)[-1]
            read[(run.prefixed(name), writer, event.key)].append(event.id)
        for key, ids in read.items():
            if written.get(key) != ids:
                problems.append(
                    f"{name} key {key[2]} from {key[1]}: read {ids}, written {written.get(key)}"
                )
                break
    problems += _sequences(run)
    return problems


def _sequences(run: Run) -> list[str]:
    problems = []
    for name in ["access.policies", *_lab_feeds(run, "policies")]:
        versions: dict[str, list[int]] = defaultdict(list)
        for event in events(run, name):
            versions[event.data["model_id"]].append(event.data["policy_version"])
        for model, seen in versions.items():
            if seen != list(range(1, len(seen) + 1)):
                problems.append(f"{name}: versions of {model} in topic order: {seen}")
    assessed: dict[str, list[int]] = defaultdict(list)
    for event in events(run, "risk.events"):
        if event.type == "RiskAssessed":
            assessed[str(event.submission_id)].append(event.data["sequence"])
    for sid, seen in assessed.items():
        if seen != list(range(1, len(seen) + 1)):
            problems.append(f"risk.events: assessments of {sid} in topic order: {seen}")
    for name, first, last in (
        ("intake.events", "SubmissionAccepted", ("ReviewWindowClosed", "SubmissionWithdrawn")),
        ("evaluation.events", "EvaluationStarted", ("EvaluationCompleted",)),
    ):
        story: dict[str, list[str]] = defaultdict(list)
        for event in events(run, name):
            if event.submission_id is not None:
                story[event.submission_id].append(event.type)
        for sid, types in story.items():
            if types[0] == "SubmissionRejected":
                continue
            if name == "intake.events" and (types[0] != first or types[-1] not in last):
                problems.append(f"{name}: {sid} in order {types}")
            if name == "evaluation.events" and (
                types[-1] not in last
                or types.count("EvaluationCompleted") != 1
                or ("EvaluationStarted" in types and types[0] != first)
            ):
                problems.append(f"{name}: {sid} in order {types}")
    return problems


# --- poison -------------------------------------------------------------------------------


def dead_letters(run: Run) -> list[str]:
    """Each DLQ holds exactly the poison its consumers could not answer, each copy with its
    original bytes and the reason; no DLQ holds anything else."""
    expected: dict[str, Counter[tuple[str, str, bytes]]] = defaultdict(Counter)
    for poison in run.poison:
        for group, reason in poison.dead_letters:
            expected[f"{poison.topic}.dlq"][(group, reason, poison.value)] += 1
    problems = []
    for topic in TOPICS:
        found: Counter[tuple[str, str, bytes]] = Counter()
        for record in run.topics[topic.dlq]:
            headers = {k: v.decode(errors="replace") for k, v in record.headers}
            found[
                (
                    headers.get("dlq.consumer", "?"),
                    headers.get("dlq.reason", "?"),
                    record.value or b"",
                )
            ] += 1
        wanted = expected.get(topic.dlq, Counter())
        if found != wanted:
            extra = [(g, r, v[:40]) for (g, r, v), n in (found - wanted).items()]
            missing = [(g, r, v[:40]) for (g, r, v), n in (wanted - found).items()]
            problems.append(f"{topic.dlq}: unexpected {extra[:5]}; missing {missing[:5]}")
    return problems


def poison_answered(run: Run) -> list[str]:
    """Poison that names an event id is answered once, with the reason, under that id."""
    answers = Counter(
        (e.data.get("rejected_event_id"), e.data.get("reason"))
        for e in events(run, "intake.events")
        if e.type == "SubmissionRejected"
    )
    problems = []
    for poison in run.poison:
        if poison.answer is None:
            continue
        got = {r: n for (i, r), n in answers.items() if i == poison.event_id}
        if got != {poison.answer: 1}:
            problems.append(f"{poison.what} {poison.event_id}: answered {got}, not {poison.answer}")
    return problems


# --- enforcement, audit ---------------------------------------------------------------------


def enforcers_current(run: Run) -> list[str]:
    """Every enforcer (those that followed the feed through the faults and those started
    at the end on the compacted feed) holds the latest version of each of its lab's
    models; each escalated model's latest version says what the reviewers decided."""
    heads = {r["model_id"]: r["version"] for r in run.tables["access"]["heads"]}
    problems = []
    for name, applied in run.enforced.items():
        lab = next(lab for lab in run.rig.labs if name == lab or name.startswith(f"{lab}-"))
        wanted = {m: v for m, v in heads.items() if m.startswith(f"{lab}/")}
        if applied != wanted:
            behind = {m: (applied.get(m), v) for m, v in wanted.items() if applied.get(m) != v}
            problems.append(f"enforcer {name}: (applied, latest) {dict(list(behind.items())[:5])}")
    latest_orders = {
        r["model_id"]: len(r["order_ids"])
        for r in run.tables["access"]["policies"]
        if heads.get(r["model_id"]) == r["version"]
    }
    for planned in run.planned:
        if not planned.kind.evaluated:
            if planned.model_id in heads:
                problems.append(f"{planned.kind} {planned.model_id} has a policy")
            continue
        orders = latest_orders.get(planned.model_id)
        wanted_orders = 0 if planned.kind is Kind.DISMISSED else 1
        if orders != wanted_orders:
            problems.append(f"{planned.kind} {planned.model_id}: latest policy has {orders} orders")
    return problems


def audit_verifies(run: Run) -> list[str]:
    code, output = run.audit
    return [] if code == 0 else [f"audit verify exited {code}: {output[-2000:]}"]


def faults_struck(run: Run, expected: Iterable[str], *, in_flight: int = 1) -> list[str]:
    """Each fault struck while at least ``in_flight`` submissions were in flight."""
    problems = []
    struck = {f.what: f for f in run.faults}
    for what in expected:
        fault = struck.get(what)
        if fault is None:
            problems.append(f"{what}: did not strike")
        elif fault.in_flight < in_flight:
            problems.append(f"{what}: struck with {fault.in_flight} submissions in flight")
    return problems


def summary(run: Run) -> str:
    kinds = Counter(p.kind.value for p in run.planned)
    faults = "; ".join(
        f"{f.what} at {f.at_s:.0f} s ({f.in_flight} in flight, back in {f.took_s:.1f} s)"
        for f in run.faults
    )
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in run.timings.items())
    return (
        f"{len(run.planned)} submissions {dict(kinds)}, {len(run.poison)} poison, "
        f"{run.filing.retries} publish retries; faults: {faults}; {timings}"
    )
